"""pricing: quotes with tax from APP_TAX_TABLE, FX rates, bulk quotes."""
import json
import os
import time

from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from zooapp import flags
from zooapp.context import current_tenant

TAX_TABLE = json.loads(os.environ["APP_TAX_TABLE"])
PRICE_LIST = {f"SKU-{i}": 500 + i * 37 for i in range(100, 110)}
FX = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79}


@require_GET
def quote(request, sku):
    cents = PRICE_LIST.get(sku, 1000)
    signed = flags.evaluate("pricing.signed-quotes", current_tenant(request)) == "on"
    tax = round(cents * TAX_TABLE.get("standard")["rate"])
    return JsonResponse({"sku": sku, "cents": cents, "taxCents": tax, "signed": signed})


@require_GET
def fx(request):
    currency = request.GET.get("currency", "USD")
    if currency != "USD":
        time.sleep(1.0)  # the FX partner lookup for non-USD currencies
    return JsonResponse({"currency": currency, "rate": FX[currency]})


@require_GET
def bulk(request):
    skus = [s for s in request.GET.get("skus", "").split(",") if s]
    # Hand-built JSON (fast path): a SKU missing from the price list formats as None.
    parts = ['{"sku": "%s", "cents": %s}' % (s, PRICE_LIST.get(s)) for s in skus]
    return HttpResponse('{"quotes": [' + ", ".join(parts) + "]}", content_type="application/json")
