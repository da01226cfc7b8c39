// SPDX-License-Identifier: Apache-2.0
// Waiting for something a peer reports, with an upper bound so that a test that breaks fails with
// a message instead of hanging. The bound is never what a test asserts.

/**
 * Resolves with the first truthy value of check() (evaluated now and on every `change` event of
 * emitter), or rejects after timeoutMs with `what` and describe() in the message.
 */
export async function waitUntil(emitter, check, { timeoutMs = 20000, what = 'condition', describe } = {}) {
  const first = check();
  if (first) return first;
  return new Promise((resolve, reject) => {
    const onChange = () => {
      let v;
      try {
        v = check();
      } catch (e) {
        cleanup();
        reject(e);
        return;
      }
      if (v) {
        cleanup();
        resolve(v);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out waiting for ${what}${describe ? `\n${describe()}` : ''}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      emitter.off('change', onChange);
    };
    emitter.on('change', onChange);
  });
}

/** A sleep that an AbortSignal ends early (resolving false). */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
