"""Stand-in for current workerd's compat-flag module, for the offline test runtime only.

Every flag the SDK asks about reads as off, which is the default for the flags it checks.
"""


def __getattr__(name: str) -> bool:
    return False
