"""The shared service-to-service client: JSON over `requests`, failures wrapped in UpstreamError."""
import time

import requests

_session = requests.Session()


class UpstreamError(Exception):
    status = 500

    def __init__(self, message, service, status_code=None):
        super().__init__(message)
        self.service = service
        self.status_code = status_code


def request_json(service, method, url, timeout=5.0, json_body=None, parse=True):
    try:
        resp = _session.request(method, url, json=json_body, timeout=timeout)
    except requests.RequestException as e:
        raise UpstreamError(f"{service} request failed: {e}", service) from e
    if resp.status_code >= 400:
        raise UpstreamError(f"{service} responded {resp.status_code} {resp.reason}", service, resp.status_code)
    return resp.json() if parse else resp


def with_retry(fn, attempts, retry_on=(503,), backoff=0.05):
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except UpstreamError as e:
            if attempt == attempts or e.status_code not in retry_on:
                raise
            time.sleep(backoff * attempt)
