"""edge: the public API `/api/...`. Every route calls catalog through
`request_json`; ONE catch-all `@app.errorhandler(Exception)` renders every
error, UpstreamError included, as a plain 500 JSON body (the common bad
translation of a dependency error).

Env: APP_PORT, CATALOG_URL.
"""

import os

import requests
from flask import Flask, g, jsonify, request

from lib.common import (AppError, UpstreamError, evaluate_flag, install_context, log, request_json, serve,
                        with_retry)

CATALOG_URL = os.environ["CATALOG_URL"]

app = Flask("edge")
install_context(app)


@app.errorhandler(Exception)
def error_responder(e):
    """Catch-all: log, answer JSON. Handled here, so Flask never sees the error as
    unhandled (and neither does the flask instrumentation)."""
    status = getattr(e, "code", None) if hasattr(e, "get_response") else None  # werkzeug HTTPException
    if status is None:
        status = e.status if isinstance(e, AppError) else 500
    log.error("edge %s %s failed: %s: %s", request.method, request.path, type(e).__name__, e)
    return jsonify(error=type(e).__name__, message=str(e)), status


def catalog(path, method="GET", **kwargs):
    return request_json("catalog", method, f"{CATALOG_URL}{path}", **kwargs)


@app.get("/api/products/<sku>")
def product(sku):
    return jsonify(catalog(f"/products/{sku}"))


@app.get("/api/quotes/bulk")
def quotes_bulk():
    return jsonify(catalog("/quotes/bulk", params={"skus": request.args.get("skus", "")}))


@app.get("/api/quotes/<sku>")
def quote(sku):
    return jsonify(catalog(f"/quotes/{sku}"))


@app.post("/api/cart/validate")
def cart_validate():
    return jsonify(catalog("/cart/validate", method="POST", json=request.get_json()))


@app.get("/api/reports/slow-movers")
def slow_movers():
    return jsonify(catalog("/reports/slow-movers", params={"days": request.args.get("days", "30")}, timeout=5))


@app.get("/api/products/<sku>/reviews")
def reviews(sku):
    return jsonify(catalog(f"/products/{sku}/reviews"))


@app.get("/api/exports/<kind>")
def export(kind):
    return jsonify(catalog(f"/exports/{kind}", timeout=5))


@app.get("/api/products/<sku>/fx")
def fx(sku):
    return jsonify(catalog(f"/products/{sku}/fx", params={"currency": request.args.get("currency", "USD")}))


@app.get("/api/products/<sku>/dimensions")
def dimensions(sku):
    return jsonify(catalog(f"/products/{sku}/dimensions"))


@app.get("/api/bundles/<bundle_id>")
def bundle(bundle_id):
    return jsonify(catalog(f"/bundles/{bundle_id}"))


@app.get("/api/inventory/sync")
def inventory_sync():
    """Proxies catalog's answer, status included (no raise on 5xx)."""
    resp = requests.get(f"{CATALOG_URL}/inventory/sync", params={"warehouse": request.args.get("warehouse", "w1")},
                        headers={"x-tenant": g.tenant}, timeout=2)
    return app.response_class(resp.content, status=resp.status_code, mimetype="application/json")


@app.get("/api/stock/<sku>")
def stock(sku):
    """Stock is read from catalog's live cache; a 503 is retried."""
    attempts = int(evaluate_flag("edge.stock-retries"))
    warehouse = request.args.get("warehouse", "us")
    return jsonify(with_retry(lambda: catalog(f"/stock/{sku}", params={"warehouse": warehouse}), attempts,
                              retry_if=lambda e: isinstance(e, UpstreamError) and e.status == 503))


# Scenario swallowed_defect: the loyalty discount of the order summary is
# computed at the edge; the tiered table has no entry for the tenant's tier
# ("platinum") -> KeyError in edge's own code, which the catch-all turns into a
# 500 without any span hearing of the exception.
LOYALTY_TIERS = {"bronze": 0.0, "silver": 0.05, "gold": 0.1}
TENANT_TIER = {"acme": "gold", "umbrella": "silver", "hooli": "platinum", "initech": "bronze"}


@app.get("/api/orders/<order_id>/summary")
def order_summary(order_id):
    product = catalog("/products/SKU-100")
    discount = 0.0
    if evaluate_flag("edge.loyalty-discounts") == "tiered":
        discount = LOYALTY_TIERS[TENANT_TIER[g.tenant]]
    return jsonify(order=order_id, sku=product["sku"], discount=discount)


if __name__ == "__main__":
    serve(app)
