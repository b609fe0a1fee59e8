"""PostgreSQL through psycopg2: a threaded pool for ordinary queries, and a small
blocking pool (psycopg2's own pools never wait: they raise at once when empty)
that waits up to `timeout` seconds for a connection and then raises PoolTimeout."""
import contextlib
import threading

import psycopg2
import psycopg2.extras
import psycopg2.pool


class PoolTimeout(Exception):
    pass


class BlockingPool:
    def __init__(self, dsn, size, timeout, **kw):
        self._pool = psycopg2.pool.ThreadedConnectionPool(0, size, dsn, **kw)
        self._slots = threading.BoundedSemaphore(size)
        self.size, self.timeout = size, timeout

    @contextlib.contextmanager
    def connection(self):
        if not self._slots.acquire(timeout=self.timeout):
            raise PoolTimeout(f"no connection free in the pool (size {self.size}) after {self.timeout}s")
        conn = self._pool.getconn()
        try:
            with conn:  # commit / roll back
                yield conn
        finally:
            self._pool.putconn(conn)
            self._slots.release()

    def query(self, sql, params=None, one=False):
        with self.connection() as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return cur.fetchone() if one else cur.fetchall()
