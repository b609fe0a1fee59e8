"""A small Flask service for faultline's real-world scenarios.

One file, several roles (``APP_ROLE`` env var or first argv): ``orders``,
``inventory``, ``payments`` and ``profiles``. It is meant to run under the stock
OpenTelemetry auto-instrumentation::

    opentelemetry-instrument python app.py orders

configured only by the standard ``OTEL_*`` environment variables. Nothing in
here imports the OpenTelemetry SDK: the app uses the API only, as an
application would (current span attributes, a feature-flag event, baggage).

Other settings (all env vars):
  APP_PORT        port to listen on (127.0.0.1 only)
  APP_DB          path of the SQLite file of this instance
  INVENTORY_URL   base URL of the inventory service (orders role)
  PAYMENT_SIGNING_KEY  the payments secret; absent on the misconfigured instance
  INVENTORY_RESERVE_DELAY  seconds the inventory reservation takes (default 1.0)
  ORDERS_REPORT_HOLD       seconds /orders/report holds its connection (default 1.0)
"""

import hashlib
import hmac
import json
import os
import signal
import sqlite3
import sys
import time

import requests
from flask import Flask, g, jsonify, request
from opentelemetry import baggage, trace
from sqlalchemy import create_engine, text
from sqlalchemy.pool import QueuePool

ROLE = os.environ.get("APP_ROLE") or (sys.argv[1] if len(sys.argv) > 1 else "orders")
PORT = int(os.environ.get("APP_PORT", "8000"))
DB_PATH = os.environ.get("APP_DB", f"/tmp/faultline-scenario-{ROLE}.sqlite")

app = Flask(f"faultline_scenario_{ROLE}")

# A deliberately tiny pool so that exhaustion is real: one connection, no
# overflow, and a checkout waits at most 0.3 s before TimeoutError.
engine = create_engine(
    f"sqlite:///{DB_PATH}",
    poolclass=QueuePool,
    pool_size=1,
    max_overflow=0,
    pool_timeout=0.3,
    connect_args={"check_same_thread": False},
)


# ---------------------------------------------------------------- data seeding
def seed_database():
    """Seed this instance's SQLite file with the stdlib driver directly, so that
    start-up DDL does not show up as traces; requests go through SQLAlchemy."""
    conn = sqlite3.connect(DB_PATH)
    with conn:
        conn.executescript(
            "DROP TABLE IF EXISTS profiles; DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS stock;"
            "CREATE TABLE profiles (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL,"
            " name TEXT NOT NULL, preferences TEXT);"
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL,"
            " sku TEXT NOT NULL, quantity INTEGER NOT NULL);"
            "CREATE TABLE stock (sku TEXT PRIMARY KEY, region_code TEXT NOT NULL,"
            " available INTEGER NOT NULL);")
        # Profiles: records imported from the legacy system have NULL preferences.
        conn.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?)", [
            (1, "acme", "Ada", json.dumps({"theme": "dark", "locale": "en-GB"})),
            (2, "acme", "Grace", json.dumps({"theme": "light", "locale": "en-US"})),
            (3, "globex", "Linus", json.dumps({"theme": "light", "locale": "fi-FI"})),
            (100, "legacy-import", "Old Customer 100", None),
            (101, "legacy-import", "Old Customer 101", None),
        ])
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", [
            (1, "acme", "SKU-US-1", 2),
            (2, "globex", "SKU-US-2", 1),
            (7, "initech", "SKU-AP-7", 5),
            (8, "initech", "SKU-AP-8", 1),
        ])
        # SKU-AP-* carry a region code that the warehouse table does not know.
        conn.executemany("INSERT INTO stock VALUES (?, ?, ?)", [
            ("SKU-US-1", "us", 40),
            ("SKU-US-2", "eu", 3),
            ("SKU-AP-7", "ap-south", 12),
            ("SKU-AP-8", "ap-south", 9),
        ])
    conn.close()


# ----------------------------------------------------------------- common bits
@app.before_request
def tag_request():
    """Tenant from the request (header, else W3C baggage) on the server span."""
    tenant = request.headers.get("x-tenant") or baggage.get_baggage("app.tenant")
    if tenant:
        g.tenant = tenant
        trace.get_current_span().set_attribute("app.tenant", tenant)


@app.after_request
def add_trace_id(response):
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        response.headers["x-trace-id"] = format(ctx.trace_id, "032x")
    return response


def evaluate_flag(key, variant, reason="TARGETING_MATCH"):
    """Record a feature flag evaluation the way the OpenTelemetry semantic
    conventions describe it: a `feature_flag.evaluation` event on the current span."""
    trace.get_current_span().add_event("feature_flag.evaluation", {
        "feature_flag.key": key,
        "feature_flag.result.variant": variant,
        "feature_flag.result.reason": reason,
        "feature_flag.provider.name": "scenario-static-flags",
    })
    return variant


# -------------------------------------------------------------------- profiles
def load_preferences(raw):
    return json.loads(raw) if raw is not None else None


def build_profile_view(row, prefs):
    return {
        "id": row["id"],
        "name": row["name"],
        "theme": prefs.get("theme", "light"),
        "locale": prefs.get("locale", "en-US"),
    }


def fetch_profile(user_id):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT id, tenant, name, preferences FROM profiles WHERE id = :id"),
            {"id": user_id}).mappings().first()


def register_profiles():
    @app.get("/profiles/<int:user_id>")
    def get_profile(user_id):
        row = fetch_profile(user_id)
        if row is None:
            return jsonify(error="not found"), 404
        return jsonify(build_profile_view(row, load_preferences(row["preferences"])))

    @app.get("/internal/profiles/<int:user_id>")
    def get_profile_record(user_id):
        row = fetch_profile(user_id)
        if row is None:
            return jsonify(error="not found"), 404
        return jsonify(id=row["id"], tenant=row["tenant"], name=row["name"],
                       preferences=load_preferences(row["preferences"]))


# ---------------------------------------------------------------------- orders
INVENTORY_URL = os.environ.get("INVENTORY_URL", "http://127.0.0.1:8001")


def load_order(order_id):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT id, customer, sku, quantity FROM orders WHERE id = :id"),
            {"id": order_id}).mappings().first()


def parse_stock_payload(body):
    payload = json.loads(body)
    return {"sku": payload["sku"], "available": int(payload["available"])}


def register_orders():
    @app.get("/orders/<int:order_id>")
    def get_order(order_id):
        order = load_order(order_id)
        if order is None:
            return jsonify(error="not found"), 404
        fast_path = evaluate_flag("inventory.fast-path", "on" if order["sku"].startswith("SKU-AP") else "off")
        resp = requests.get(f"{INVENTORY_URL}/inventory/{order['sku']}",
                            params={"fast": fast_path}, timeout=2.0)
        resp.raise_for_status()
        return jsonify(order=dict(order), stock=resp.json())

    @app.post("/orders/<int:order_id>/reserve")
    def reserve_order(order_id):
        order = load_order(order_id)
        if order is None:
            return jsonify(error="not found"), 404
        # The inventory answers in ~1 s under lock contention; we give it 0.3 s
        # and let the ReadTimeout escape (a generic 500, not a 504).
        resp = requests.post(f"{INVENTORY_URL}/inventory/{order['sku']}/reserve",
                             json={"quantity": order["quantity"]}, timeout=0.3)
        resp.raise_for_status()
        return jsonify(reserved=resp.json())

    @app.get("/orders/<int:order_id>/stock")
    def order_stock(order_id):
        order = load_order(order_id)
        if order is None:
            return jsonify(error="not found"), 404
        resp = requests.get(f"{INVENTORY_URL}/inventory/{order['sku']}/stock", timeout=2.0)
        resp.raise_for_status()
        return jsonify(order_id=order_id, stock=parse_stock_payload(resp.text))

    @app.get("/orders/report")
    def orders_report():
        hold = float(os.environ.get("ORDERS_REPORT_HOLD", "1.0"))
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT customer, COUNT(*) AS n, SUM(quantity) AS q FROM orders GROUP BY customer")).mappings().all()
            time.sleep(hold)  # a slow report that keeps its pooled connection checked out
        return jsonify(report=[dict(r) for r in rows])


# ------------------------------------------------------------------- inventory
WAREHOUSES = {"us": "wh-virginia", "eu": "wh-frankfurt"}


def warehouse_for(row):
    return WAREHOUSES[row["region_code"]]


def load_stock(sku):
    with engine.connect() as conn:
        return conn.execute(text("SELECT sku, region_code, available FROM stock WHERE sku = :sku"),
                            {"sku": sku}).mappings().first()


def register_inventory():
    @app.get("/inventory/<sku>")
    def get_stock(sku):
        row = load_stock(sku)
        if row is None:
            return jsonify(error="unknown sku"), 404
        return jsonify(sku=sku, available=row["available"], warehouse=warehouse_for(row))

    @app.post("/inventory/<sku>/reserve")
    def reserve(sku):
        time.sleep(float(os.environ.get("INVENTORY_RESERVE_DELAY", "1.0")))
        return jsonify(sku=sku, reserved=(request.get_json(silent=True) or {}).get("quantity", 1))

    @app.get("/inventory/<sku>/stock")
    def stock_feed(sku):
        row = load_stock(sku)
        # The legacy stock feed truncates its document: 200, JSON content type,
        # body cut off mid-object.
        body = json.dumps({"sku": sku, "available": row["available"], "warehouse": "legacy-feed"})
        return app.response_class(body[: len(body) // 2], status=200, mimetype="application/json")


# -------------------------------------------------------------------- payments
def load_config():
    keys = ("PAYMENT_SIGNING_KEY", "PAYMENT_PROVIDER_URL")
    return {k: os.environ[k] for k in keys if k in os.environ}


CONFIG = load_config()


def sign_payment(payload):
    key = CONFIG["PAYMENT_SIGNING_KEY"]
    return hmac.new(key.encode(), json.dumps(payload, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def register_payments():
    @app.post("/payments/checkout")
    def checkout():
        payload = request.get_json(silent=True) or {}
        variant = evaluate_flag("checkout.signed-receipts", "v2")
        signature = sign_payment(payload)
        return jsonify(status="accepted", receipt_format=variant, signature=signature[:16])


ROLES = {
    "orders": register_orders,
    "inventory": register_inventory,
    "payments": register_payments,
    "profiles": register_profiles,
}


def main():
    if ROLE not in ROLES:
        raise SystemExit(f"unknown role {ROLE!r}; one of {sorted(ROLES)}")
    ROLES[ROLE]()
    seed_database()

    def _terminate(signum, frame):
        # Raise SystemExit so that atexit handlers run: the OpenTelemetry SDK
        # flushes its BatchSpanProcessor there. Python's default SIGTERM action
        # would exit without running them and lose the last batch.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    app.run(host="127.0.0.1", port=PORT, threaded=True, use_reloader=False, debug=False)


if __name__ == "__main__":
    main()
