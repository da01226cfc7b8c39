// SPDX-License-Identifier: Apache-2.0
// Copies a text to the clipboard and says so. Outside a secure context (plain HTTP to a host
// other than this machine) the Clipboard API is missing: a hidden selection and the copy command
// do it instead.

import { useEffect, useRef, useState } from 'preact/hooks';

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const ta = document.createElement('textarea');
  ta.value = text;
  ta.setAttribute('readonly', '');
  ta.className = 'offscreen';
  document.body.appendChild(ta);
  ta.select();
  const ok = document.execCommand('copy');
  ta.remove();
  if (!ok) throw new Error('copy refused');
}

export function CopyButton({ text, label = 'Copy', disabled = false, class: cls = '' }) {
  const [state, setState] = useState('');
  const timer = useRef(0);
  useEffect(() => () => clearTimeout(timer.current), []);
  const onClick = async () => {
    try {
      await copyText(text);
      setState('Copied');
    } catch {
      setState('Copy failed: select the text and copy it');
    }
    clearTimeout(timer.current);
    timer.current = setTimeout(() => setState(''), 2500);
  };
  return (
    <span class={'copy ' + cls}>
      <button type="button" class="button button-small" disabled={disabled} onClick={onClick}>
        {label}
      </button>
      <span class="copy-state" role="status" aria-live="polite">
        {state}
      </span>
    </span>
  );
}

/** A block of code with its copy button. */
export function CodeBlock({ text, display, label, copyLabel = 'Copy' }) {
  return (
    <div class="code-block">
      <pre tabIndex={0} aria-label={label}>
        <code>{display !== undefined ? display : text}</code>
      </pre>
      <CopyButton text={text} label={copyLabel} />
    </div>
  );
}
