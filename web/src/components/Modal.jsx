// SPDX-License-Identifier: Apache-2.0
// A modal dialog on the native <dialog>: the browser keeps focus inside it, Escape closes it, and
// focus returns to what opened it.

import { useEffect, useRef } from 'preact/hooks';

let nextId = 0;

export function Modal({ title, onClose, children, wide = false }) {
  const ref = useRef(null);
  const id = useRef(`modal-title-${++nextId}`);
  useEffect(() => {
    const d = ref.current;
    const opener = document.activeElement;
    if (d && !d.open) d.showModal();
    return () => {
      if (d && d.open) d.close();
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    };
  }, []);
  const onCancel = (e) => {
    e.preventDefault();
    onClose();
  };
  // The browser may close a dialog by itself (Escape pressed twice, a close request it does not
  // let the page cancel): then it is closed here too.
  const onNativeClose = () => {
    if (ref.current && ref.current.isConnected) onClose();
  };
  return (
    <dialog ref={ref} class={wide ? 'modal modal-wide' : 'modal'} aria-labelledby={id.current} onCancel={onCancel} onClose={onNativeClose}>
      <div class="modal-head">
        <h2 id={id.current}>{title}</h2>
        <button type="button" class="icon-button" aria-label="Close" onClick={onClose}>
          ×
        </button>
      </div>
      <div class="modal-body">{children}</div>
    </dialog>
  );
}

/** A yes/no question before something that cannot be undone. */
export function ConfirmDialog({ title, children, confirmLabel, busy, error, onConfirm, onClose }) {
  return (
    <Modal title={title} onClose={onClose}>
      {children}
      {error && (
        <p class="notice notice-error" role="alert">
          {error}
        </p>
      )}
      <div class="actions">
        <button type="button" class="button" onClick={onClose}>
          Cancel
        </button>
        <button type="button" class="button button-danger" disabled={busy} onClick={onConfirm}>
          {busy ? 'Working…' : confirmLabel}
        </button>
      </div>
    </Modal>
  );
}
