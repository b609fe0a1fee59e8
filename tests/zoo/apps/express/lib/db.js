'use strict';
// PostgreSQL pools. `main` for the request path (statement_timeout 1.5 s, as the
// DBA set it for the API role); `exports` a pool of one connection for the CSV
// exports, so a long export cannot starve the API (it starves other exports
// instead), with a 300 ms acquisition timeout.
const { Pool } = require('pg');

function pools(url) {
  const main = new Pool({ connectionString: url, max: 5, statement_timeout: 1500 });
  const exports = new Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 300 });
  for (const p of [main, exports]) p.on('error', (e) => console.error(`[pg] idle client error: ${e.message}`));
  return { main, exports };
}

module.exports = { pools };
