"""Serve one app with uvicorn on APP_PORT: `python serve.py edge.app:app`.

uvicorn handles SIGTERM (graceful shutdown, then a normal exit), so the SDK's
atexit shutdown flushes the batch span processor."""
import os
import sys

import uvicorn

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    uvicorn.run(sys.argv[1], host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning",
                timeout_graceful_shutdown=3)
