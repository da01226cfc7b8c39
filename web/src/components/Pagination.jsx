// SPDX-License-Identifier: Apache-2.0
// Page links under a paged table; the page lives in the URL, so each is a link.

import { pageCount, pageItems, rangeLabel } from '../lib/pagination.js';

export function Pagination({ page, pageSize, total, href, label }) {
  const count = pageCount(total, pageSize);
  return (
    <nav class="pagination" aria-label={label}>
      <span class="pagination-range">{rangeLabel(page, pageSize, total)}</span>
      {count > 1 && (
        <ul>
          <li>
            {page > 1 ? (
              <a href={href(page - 1)} rel="prev">
                Previous
              </a>
            ) : (
              <span class="disabled" aria-disabled="true">
                Previous
              </span>
            )}
          </li>
          {pageItems(page, count).map((p, i) => (
            <li key={p === null ? `gap${i}` : p}>
              {p === null ? (
                <span aria-hidden="true">…</span>
              ) : p === page ? (
                <a href={href(p)} aria-current="page" aria-label={`Page ${p}`}>
                  {p}
                </a>
              ) : (
                <a href={href(p)} aria-label={`Page ${p}`}>
                  {p}
                </a>
              )}
            </li>
          ))}
          <li>
            {page < count ? (
              <a href={href(page + 1)} rel="next">
                Next
              </a>
            ) : (
              <span class="disabled" aria-disabled="true">
                Next
              </span>
            )}
          </li>
        </ul>
      )}
    </nav>
  );
}
