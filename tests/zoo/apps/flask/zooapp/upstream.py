"""The one HTTP client helper of the services: `requests` with a shared Session;
every failure (an error status, a refused connection, a timeout) becomes an
UpstreamError raised `from` the requests exception. The tenant is forwarded."""
import requests

from .web import tenant

SESSION = requests.Session()


class UpstreamError(Exception):
    def __init__(self, message, service, status=None):
        super().__init__(message)
        self.service = service
        self.status = status


def call(service, method, url, *, timeout=5.0, json=None, params=None):
    headers = {}
    if tenant():
        headers["x-tenant"] = tenant()
    try:
        resp = SESSION.request(method, url, json=json, params=params, headers=headers, timeout=timeout)
        resp.raise_for_status()
    except requests.HTTPError as err:
        r = err.response
        raise UpstreamError(f"{service} responded {r.status_code} {r.reason}", service, r.status_code) from err
    except requests.Timeout as err:
        raise UpstreamError(f"{service} timed out after {timeout}s", service) from err
    except requests.ConnectionError as err:
        raise UpstreamError(f"{service} unreachable", service) from err
    return resp


def get_json(service, url, **kw):
    return call(service, "GET", url, **kw).json()


def post_json(service, url, body, **kw):
    return call(service, "POST", url, json=body, **kw).json()
