"""pricing: quotes with tax from APP_TAX_TABLE, FX rates (1 s for anything but
USD), bulk quotes. Deployed twice with the same release: us-east-1 and
eu-west-1 (whose tax table has no `standard` rate).

Errors: lib.common.install_exception_handlers.

Env: APP_PORT, APP_TAX_TABLE.
"""

import asyncio
import json
import os

from fastapi import FastAPI
from fastapi.responses import Response

from lib.common import evaluate_flag, install_context, install_exception_handlers

TAX_TABLE = json.loads(os.environ["APP_TAX_TABLE"])
PRICE_LIST = {f"SKU-{i}": 500 + i * 37 for i in range(100, 108)}
FX = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79}

app = FastAPI(title="pricing")
install_context(app)
install_exception_handlers(app)


# Scenario malformed_json: the bulk answer is hand-built for speed; a SKU that
# is not in the price list leaves an empty value -> invalid JSON, answered 200.
@app.get("/quote/bulk")
async def quote_bulk(skus: str = ""):
    parts = ['{"sku": "%s", "cents": %s}' % (s, PRICE_LIST.get(s, "")) for s in skus.split(",") if s]
    return Response('{"quotes": [' + ", ".join(parts) + "]}", media_type="application/json")


# Scenario region_config: the eu-west-1 deployment's APP_TAX_TABLE lacks the
# `standard` entry -> KeyError: 'standard'.
@app.get("/quote/{sku}")
async def quote(sku: str, cents: int, country: str = "US"):
    signed = evaluate_flag("pricing.signed-quotes") == "on"
    rate = TAX_TABLE["standard"]["rate"]
    return {"sku": sku, "cents": cents, "taxCents": round(cents * rate), "total": round(cents * (1 + rate)),
            "signature": "sig-" + sku if signed else None}


# Scenario partner_timeout: a live FX lookup for anything but USD takes a second.
@app.get("/rates/fx")
async def rates_fx(currency: str = "USD"):
    if currency != "USD":
        await asyncio.sleep(1.0)
    return {"currency": currency, "rate": FX.get(currency, 1.0)}
