"""edge: the public API. Every route calls catalog through zooapp.upstream; a
caught UpstreamError ends in the shared error responder as a 500 (the common bad
translation of a dependency failure)."""
import os
import time

from flask import jsonify, request

from zooapp.upstream import UpstreamError, get_json, post_json
from zooapp.web import create_app, flag

app = create_app("edge")
CATALOG = os.environ["CATALOG_URL"]


def catalog(path, **kw):
    return get_json("catalog", CATALOG + path, params=request.args or None, **kw)


@app.get("/api/products/<sku>")
def product(sku):
    return jsonify(catalog(f"/products/{sku}"))


@app.get("/api/products/<sku>/reviews")
def reviews(sku):
    return jsonify(catalog(f"/products/{sku}/reviews"))


@app.get("/api/products/<sku>/fx")
def fx(sku):
    return jsonify(catalog(f"/products/{sku}/fx"))


@app.get("/api/products/<sku>/dimensions")
def dimensions(sku):
    return jsonify(catalog(f"/products/{sku}/dimensions"))


@app.get("/api/quotes/bulk")
def bulk_quotes():
    return jsonify(catalog("/quotes/bulk"))


@app.get("/api/quotes/<sku>")
def quote(sku):
    return jsonify(catalog(f"/quotes/{sku}"))


@app.post("/api/cart/validate")
def cart_validate():
    return jsonify(post_json("catalog", CATALOG + "/cart/validate", request.get_json()))


@app.get("/api/reports/slow-movers")
def slow_movers():
    return jsonify(catalog("/reports/slow-movers"))


@app.get("/api/exports/<kind>")
def exports(kind):
    return jsonify(catalog(f"/exports/{kind}"))


@app.get("/api/inventory/sync")
def inventory_sync():
    return jsonify(catalog("/inventory/sync"))


@app.get("/api/stock/<sku>")
def stock(sku):
    attempts = int(flag("edge.stock-retries", os.environ.get("APP_STOCK_RETRIES", "3")))
    for attempt in range(1, attempts + 1):
        try:
            return jsonify(catalog(f"/stock/{sku}"))
        except UpstreamError as err:
            if err.status != 503 or attempt == attempts:
                raise
            time.sleep(0.05 * attempt)


@app.get("/api/bundles/<bid>")
def bundle(bid):
    return jsonify(catalog(f"/bundles/{bid}"))


@app.get("/healthz")
def healthz():
    return {"ok": True}
