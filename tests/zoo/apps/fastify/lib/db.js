'use strict';
// PostgreSQL pools: `main` for the request path; `reports` with a client-side
// query_timeout of 1.5 s (the reports SLO); `exports`, one connection for the
// CSV exports with a 300 ms acquisition timeout.
const { Pool } = require('pg');

function pools(url) {
  const main = new Pool({ connectionString: url, max: 5 });
  const reports = new Pool({ connectionString: url, max: 2, query_timeout: 1500 });
  const exports = new Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 300 });
  for (const p of [main, reports, exports]) p.on('error', (e) => console.error(`[pg] idle client error: ${e.message}`));
  return { main, reports, exports, end: () => Promise.all([main.end(), reports.end(), exports.end()]) };
}

module.exports = { pools };
