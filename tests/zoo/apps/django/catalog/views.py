"""catalog: products, tenants, stock, bundles, reports, exports (Django ORM on
PostgreSQL, redis-py), calling pricing (by the tenant's region) and reviews."""
import datetime as dt
import json
import os

import redis
from django.db import connections
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from redis.backoff import NoBackoff
from redis.retry import Retry

from catalog.models import InventorySync, Product, Tenant
from zooapp import flags
from zooapp.context import current_tenant
from zooapp.errors import ServiceUnavailableError, ValidationError
from zooapp.upstream import request_json

PRICING = {"us": os.environ["PRICING_URL"], "eu": os.environ["PRICING_EU_URL"]}
REVIEWS_URL = os.environ["REVIEWS_URL"]
_no_retry = dict(retry=Retry(NoBackoff(), 0), socket_connect_timeout=0.5, socket_timeout=1.0)
cache = redis.Redis.from_url(os.environ["APP_REDIS_URL"], decode_responses=True, **_no_retry)
# Stock of each warehouse lives in that warehouse's Redis.
STOCK = {
    "w1": cache,
    "w2": redis.Redis.from_url(os.environ["APP_STOCK_W2_REDIS_URL"], decode_responses=True, **_no_retry),
}


def _tenant(request):
    return Tenant.objects.get(id=current_tenant(request))


@require_GET
def product(request, sku):
    tenant = _tenant(request)
    p = Product.objects.get(sku=sku)
    body = {"sku": p.sku, "name": p.name, "priceCents": p.price_cents}
    if flags.evaluate("catalog.shipping-v2", tenant.id) == "v1":
        # v1 shipping: the zone comes from the tenant's settings (null for some tenants).
        body["shippingZone"] = tenant.settings.get("shipping").get("zone")
    else:
        body["shippingZone"] = (tenant.settings.get("shipping") or {}).get("zone", "DEFAULT")
    return JsonResponse(body)


@require_GET
def quote(request, sku):
    tenant = _tenant(request)
    base = PRICING[tenant.region]
    q = request_json("pricing", "GET", f"{base}/quote/{sku}?country={tenant.country}")
    return JsonResponse({"sku": sku, "quote": q})


@require_GET
def bulk_quotes(request):
    skus = request.GET.get("skus", "")
    resp = request_json("pricing", "GET", f"{PRICING['us']}/quotes/bulk?skus={skus}", parse=False)
    quotes = resp.json()  # pricing answered 200: catalog trusts it to be JSON
    return JsonResponse({"quotes": quotes["quotes"], "total": sum(q["cents"] for q in quotes["quotes"])})


@require_GET
def reviews(request, sku):
    r = request_json("reviews", "GET", f"{REVIEWS_URL}/reviews/{sku}", timeout=1.0)
    return JsonResponse({"sku": sku, "reviews": r})


@require_GET
def fx(request, sku):
    p = Product.objects.get(sku=sku)
    currency = request.GET.get("currency", "USD")
    rate = request_json("pricing", "GET", f"{PRICING['us']}/rates/fx?currency={currency}", timeout=0.3)
    return JsonResponse({"sku": sku, "currency": currency, "price": round(p.price_cents * rate["rate"] / 100, 2)})


@require_GET
def dimensions(request, sku):
    dims = None
    if flags.evaluate("catalog.dimensions-cache", current_tenant(request)) == "redis":
        try:
            cached = cache.get(f"product:{sku}")
            dims = json.loads(cached) if cached else None
        except redis.RedisError:
            dims = None  # cache trouble: fall back to PostgreSQL
    if dims is None:
        dims = Product.objects.get(sku=sku).dimensions
    volume = dims["widthCm"] * dims["heightCm"] * dims["depthCm"]
    return JsonResponse({"sku": sku, "volumeCm3": volume})


class CartLine:
    def __init__(self, cart, sku, qty):
        self.cart, self.sku, self.qty = cart, sku, qty


@csrf_exempt
@require_POST
def validate_cart(request):
    items = json.loads(request.body)["items"]
    cart = {"tenant": current_tenant(request), "lines": []}
    for it in items:
        line = {"sku": it["sku"], "qty": it["qty"], "cart": cart}  # each line points back at its cart
        cart["lines"].append(line)
    bad = [line for line in cart["lines"] if line["qty"] <= 0]
    if bad:
        raise ValidationError("cart has lines with a non-positive quantity", details={"lines": bad})
    return JsonResponse({"ok": True, "lines": len(items)})


@require_GET
def slow_movers(request):
    days = int(request.GET.get("days", "30"))
    with connections["default"].cursor() as cur:
        cur.execute("SELECT sku, pg_sleep(%s) FROM products WHERE sku = 'SKU-100'", [days / 180])
        rows = cur.fetchall()
    return JsonResponse({"days": days, "rows": len(rows)})


@require_GET
def export(request, kind):
    # The exports pool has one connection: orders holds it for 0.8 s.
    hold = 0.8 if kind == "orders" else 0.05
    with connections["exports"].cursor() as cur:
        cur.execute("SELECT count(*), pg_sleep(%s) FROM products", [hold])
        count = cur.fetchone()[0]
    return JsonResponse({"kind": kind, "rows": count})


@require_GET
def inventory_sync(request):
    wh = request.GET.get("warehouse", "w1")
    row = InventorySync.objects.get(warehouse=wh)
    age = timezone.now() - row.synced_at
    if age > dt.timedelta(hours=1):
        return JsonResponse({"ok": False, "warehouse": wh, "stale_s": int(age.total_seconds())}, status=500)
    return JsonResponse({"ok": True, "warehouse": wh})


@require_GET
def stock(request, sku):
    wh = request.GET.get("warehouse", "w1")
    try:
        levels = STOCK[wh].hgetall(f"stock:{sku}")
    except redis.ConnectionError as e:
        raise ServiceUnavailableError(f"stock store of {wh} unavailable") from e
    return JsonResponse({"sku": sku, "warehouse": wh, "levels": {k: int(v) for k, v in levels.items()}})


@require_GET
def bundle(request, bundle_id):
    with connections["default"].cursor() as cur:
        cur.execute("SELECT skus FROM bundles WHERE id = %s", [bundle_id])
        skus = cur.fetchone()[0]
    items = [Product.objects.get(sku=s) for s in skus]  # one query per item
    total = sum(p.pricing["listCents"] for p in items)
    return JsonResponse({"id": bundle_id, "items": len(items), "totalCents": total})
