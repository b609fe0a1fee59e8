"""edge: the public API /api/...; every route calls catalog through request_json."""
import json
import os

import requests
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from zooapp import flags
from zooapp.context import current_tenant
from zooapp.upstream import request_json, with_retry

CATALOG = os.environ["CATALOG_URL"]


@csrf_exempt
def proxy(request, rest):
    url = f"{CATALOG}/{rest}"
    if request.GET:
        url += "?" + request.GET.urlencode()
    body = json.loads(request.body) if request.body else None
    data = request_json("catalog", request.method, url, timeout=5.0, json_body=body)
    return JsonResponse(data)


def stock(request, sku):
    attempts = int(flags.evaluate("edge.stock-retries", current_tenant(request)))
    url = f"{CATALOG}/stock/{sku}?{request.GET.urlencode()}"
    return JsonResponse(with_retry(lambda: request_json("catalog", "GET", url), attempts))


def inventory_sync(request):
    # Plain pass-through: catalog's status and body as they are.
    resp = requests.get(f"{CATALOG}/inventory/sync?{request.GET.urlencode()}", timeout=5.0)
    return JsonResponse(resp.json(), status=resp.status_code)
