// SPDX-License-Identifier: Apache-2.0
// The product's mark, drawn inline: no request of its own on the first paint.

export function Logo({ size = 24 }) {
  return (
    <svg class="logo" width={size} height={size} viewBox="0 0 32 32" aria-hidden="true" focusable="false">
      <path fill="#2f6fdd" d="M16 2 29 9v14l-13 7-13-7V9z" />
      <path fill="#fff" fill-opacity=".9" d="M16 5.4 25.8 10.7 16 16 6.2 10.7z" />
      <path fill="#fff" fill-opacity=".55" d="M17.2 18.1 26.6 13v8.9l-9.4 5.1z" />
    </svg>
  );
}
