"""Known crawlers are recognised by User-Agent or Cloudflare's verified-bot flag; browsers not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeshelf.crawlers import CRAWLER_TOKENS, is_crawler
from tests.unit.strategies import FAST

CRAWLERS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; "
    "+http://www.google.com/bot.html) Chrome/131.0.6778.204 Safari/537.36",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot",
    "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "GOOGLEBOT",  # case-insensitive
]
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 12; CUBOT KINGKONG 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "",
]


@pytest.mark.parametrize("ua", CRAWLERS)
def test_known_crawlers_are_recognised(ua):
    """Search, social, AI and monitoring bots are crawlers."""
    assert is_crawler(ua)


@pytest.mark.parametrize("ua", [*BROWSERS, None])
def test_browsers_are_not_crawlers(ua):
    """Real browsers, a phone brand that contains 'bot', and no User-Agent are not crawlers."""
    assert not is_crawler(ua)


def test_cloudflare_verified_bots_are_crawlers_whatever_their_user_agent():
    """request.cf.botManagement.verifiedBot marks a crawler even with a browser's User-Agent."""
    assert is_crawler(BROWSERS[0], verified_bot=True)


@pytest.mark.parametrize("token", sorted(set(CRAWLER_TOKENS)))
def test_every_listed_token_matches_in_a_user_agent(token):
    """Each token in the list is found inside a typical User-Agent string."""
    assert is_crawler(f"Mozilla/5.0 (compatible; {token}/1.0; +https://example.com)")


@FAST
@given(st.text(max_size=5000))
def test_any_header_value_is_answered(ua):
    """No User-Agent value, however long or odd, raises."""
    assert isinstance(is_crawler(ua), bool)
