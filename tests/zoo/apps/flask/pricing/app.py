"""pricing: quotes with tax from APP_TAX_TABLE, FX rates (1 s for anything but
USD), bulk quotes. Deployed twice with the same release: us-east-1 and
eu-west-1 (whose tax table has no `standard` rate).

Errors: lib.common.install_error_responders (unhandled -> Flask's 500 path).

Env: APP_PORT, APP_TAX_TABLE.
"""

import json
import os
import time

from flask import Flask, jsonify, request

from lib.common import evaluate_flag, install_context, install_error_responders, serve

TAX_TABLE = json.loads(os.environ["APP_TAX_TABLE"])
PRICE_LIST = {f"SKU-{i}": 500 + i * 37 for i in range(100, 108)}
FX = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79}

app = Flask("pricing")
install_context(app)
install_error_responders(app)


# Scenario region_config: the eu-west-1 deployment's APP_TAX_TABLE lacks the
# `standard` entry -> KeyError: 'standard'.
@app.get("/quote/<sku>")
def quote(sku):
    cents = int(request.args["cents"])
    signed = evaluate_flag("pricing.signed-quotes") == "on"
    rate = TAX_TABLE["standard"]["rate"]
    return jsonify(sku=sku, cents=cents, taxCents=round(cents * rate), total=round(cents * (1 + rate)),
                   signature="sig-" + sku if signed else None)


# Scenario malformed_json: the bulk answer is hand-built for speed; a SKU that
# is not in the price list leaves an empty value -> invalid JSON, answered 200.
@app.get("/quote/bulk")
def quote_bulk():
    skus = [s for s in request.args.get("skus", "").split(",") if s]
    parts = ['{"sku": "%s", "cents": %s}' % (s, PRICE_LIST.get(s, "")) for s in skus]
    return app.response_class('{"quotes": [' + ", ".join(parts) + "]}", status=200, mimetype="application/json")


# Scenario partner_timeout: a live FX lookup for anything but USD takes a second.
@app.get("/rates/fx")
def rates_fx():
    currency = request.args.get("currency", "USD")
    if currency != "USD":
        time.sleep(1.0)
    return jsonify(currency=currency, rate=FX.get(currency, 1.0))


if __name__ == "__main__":
    serve(app)
