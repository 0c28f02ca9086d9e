// KV read faults for the local stack (`--kv-faults`): a KV binding that fails the reads a test
// asks it to, so the Worker's handling of a failing KV is tested against the real local KV.
// The same wrapper serves the workerd stack (as a wrapped binding, ./stack.mjs) and the Pyodide
// host (./pyodide/host.mjs). The control document lives in the namespace itself, written through
// the local v4 API like any value (LocalStack.kv_faults in localstack.py):
//
//   __edgeshelf:kv-faults = {"keys": ["shell:home"], "prefixes": ["seg:"]}
//
// A read of a listed key, or of a key under a listed prefix, rejects as a KV outage does.
export const FAULTS_KEY = "__edgeshelf:kv-faults";

async function injected(kv, key) {
  const raw = await kv.get(FAULTS_KEY);
  if (!raw || key === FAULTS_KEY) return false;
  let faults;
  try {
    faults = JSON.parse(raw);
  } catch {
    return false;
  }
  return (
    (faults.keys ?? []).includes(key) ||
    (faults.prefixes ?? []).some((prefix) => String(key).startsWith(prefix))
  );
}

/** `kv` with reads failing as the control document says. */
export function withFaults(kv) {
  const fail = async (key) => {
    if (await injected(kv, key)) {
      throw new Error(`KV GET failed: 500 Internal Server Error (injected for ${key})`);
    }
  };
  return {
    async get(key, options) {
      await fail(key);
      return kv.get(key, options);
    },
    async getWithMetadata(key, options) {
      await fail(key);
      return kv.getWithMetadata(key, options);
    },
    put: (key, value, options) => kv.put(key, value, options),
    delete: (key) => kv.delete(key),
    list: (options) => kv.list(options),
  };
}
