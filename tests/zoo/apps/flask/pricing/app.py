"""pricing: quotes with tax from APP_TAX_TABLE (deployed twice: us-east-1 and
eu-west-1, whose table lacks `standard`), FX rates (slow for EUR) and a bulk
endpoint that hand-builds its JSON."""
import json
import os
import time

from flask import Response, jsonify, request

from zooapp.web import create_app, flag

app = create_app("pricing")
TAX_TABLE = json.loads(os.environ["APP_TAX_TABLE"])
PRICES = {f"SKU-{i}": 500 + i * 37 for i in range(100, 110)}
FX = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79}


@app.get("/quote/<sku>")
def quote(sku):
    cents = int(request.args["cents"])
    signed = flag("pricing.signed-quotes", "on")
    rate = TAX_TABLE["standard"]["rate"]  # KeyError where the table has no `standard` (eu-west-1)
    return jsonify(sku=sku, net=cents, gross=round(cents * (1 + rate)), signed=signed == "on")


@app.get("/rates/fx")
def fx():
    currency = request.args.get("currency", "USD")
    if currency == "EUR":
        time.sleep(1.0)  # the EUR feed is slow
    return jsonify(currency=currency, rate=FX[currency])


@app.get("/quotes/bulk")
def bulk():
    skus = request.args.get("skus", "").split(",")
    # Hand-built JSON "for speed": an unknown SKU renders as Python's `None`.
    body = "{" + ",".join(f'"{s}": {PRICES.get(s)}' for s in skus) + "}"
    return Response(body, mimetype="application/json")


@app.get("/healthz")
def healthz():
    return {"ok": True}
