#!/usr/bin/env python3
"""Driver for faultline's real-world trace scenarios (Python 3.11, stdlib only).

Real services under the stock OpenTelemetry SDKs (a Flask app under
`opentelemetry-instrument`, an express app under
`@opentelemetry/auto-instrumentations-node/register`) are started on free
127.0.0.1 ports, fed a request pattern that ends in HTTP 500 at the outermost
service, and stopped gracefully (SIGTERM, so the SDKs flush).

  run.py setup   [--env-dir DIR]
  run.py run     SCENARIO --otlp-endpoint http://127.0.0.1:PORT
                 [--protocol http/protobuf|grpc] [--requests N] [--env-dir DIR]
  run.py capture [SCENARIO ...|all] [--out-dir tests/fixtures/traces] [--requests N]
                 [--protocol http/protobuf|grpc] [--env-dir DIR]
  run.py list

DIR (the venv and node_modules) defaults to $FAULTLINE_SCENARIO_ENV or
<repo>/target/scenario-env. `run` prints a JSON summary on its last line:
  {"scenario":..., "requests":N, "expected_500s":M, "trace_ids":[...], ...}
and exits 1 when the observed number of 500s differs from the expected one.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PY_DIR = HERE / "python"
NODE_DIR = HERE / "node"
DEFAULT_ENV = Path(os.environ.get("FAULTLINE_SCENARIO_ENV") or REPO / "target" / "scenario-env")
DEFAULT_FIXTURES = REPO / "tests" / "fixtures" / "traces"


def log(msg):
    print(f"[scenarios] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- setup
def _digest(*paths, extra=""):
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def setup(env_dir: Path):
    env_dir.mkdir(parents=True, exist_ok=True)
    did = []
    # Python venv, from the real interpreter (sys.executable is the resolved
    # binary even when this script was started through the pyenv shim).
    venv = env_dir / "venv"
    req = PY_DIR / "requirements.txt"
    stamp = venv / ".faultline-requirements.sha256"
    want = _digest(req, extra=f"{sys.version}|{sys.executable}")
    if stamp.exists() and stamp.read_text().strip() == want and (venv / "bin" / "opentelemetry-instrument").exists():
        did.append(f"python venv up to date ({venv})")
    else:
        t0 = time.monotonic()
        if venv.exists():
            shutil.rmtree(venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
        # Every package is pinned in requirements.txt: --no-deps keeps the set exact.
        subprocess.run(pip + ["install", "--no-deps", "-r", str(req)], check=True)
        subprocess.run(pip + ["check"], check=True)
        stamp.write_text(want + "\n")
        did.append(f"created python venv {venv} from {req.name} in {time.monotonic() - t0:.1f}s")
    # Node: npm ci from the committed lock file into DIR/node.
    node_env = env_dir / "node"
    pkg, lock = NODE_DIR / "package.json", NODE_DIR / "package-lock.json"
    nstamp = node_env / ".faultline-lock.sha256"
    nwant = _digest(pkg, lock)
    if nstamp.exists() and nstamp.read_text().strip() == nwant and (node_env / "node_modules").is_dir():
        did.append(f"node_modules up to date ({node_env})")
    else:
        t0 = time.monotonic()
        node_env.mkdir(parents=True, exist_ok=True)
        shutil.copy2(pkg, node_env / "package.json")
        shutil.copy2(lock, node_env / "package-lock.json")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=node_env, check=True)
        nstamp.write_text(nwant + "\n")
        did.append(f"npm ci into {node_env} in {time.monotonic() - t0:.1f}s")
    for line in did:
        print(line)


# ------------------------------------------------------------------ services
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, name, lang, role=None, service_name=None, version="1.0.0",
                 environment="production", region="us-east-1", env=None, legacy_env_key=False):
        self.name = name                      # instance name within the scenario
        self.lang = lang                      # "python" | "node"
        self.role = role
        self.service_name = service_name or role or name
        self.version = version
        self.environment = environment
        self.region = region
        self.extra_env = env or {}
        self.legacy_env_key = legacy_env_key  # deployment.environment instead of .name
        self.port = None
        self.proc = None
        self.logfile = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def command_and_env(self, env_dir: Path, otlp_endpoint, protocol, urls):
        env_key = "deployment.environment" if self.legacy_env_key else "deployment.environment.name"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update({
            "OTEL_SERVICE_NAME": self.service_name,
            "OTEL_RESOURCE_ATTRIBUTES": f"service.version={self.version},{env_key}={self.environment},"
                                        f"cloud.region={self.region}",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "APP_PORT": str(self.port),
        })
        env.update({k: v.format(**urls) for k, v in self.extra_env.items()})
        if self.lang == "python":
            venv = env_dir / "venv"
            env["APP_ROLE"] = self.role
            env["PYTHONUNBUFFERED"] = "1"
            cmd = [str(venv / "bin" / "opentelemetry-instrument"), str(venv / "bin" / "python"),
                   str(PY_DIR / "app.py"), self.role]
            return cmd, env, None
        node_env = env_dir / "node"
        env["NODE_PATH"] = str(node_env / "node_modules")
        # Only local resource detectors: the default "all" includes cloud
        # detectors that probe the instance metadata address (not loopback).
        env["OTEL_NODE_RESOURCE_DETECTORS"] = "env,host,os,process,serviceinstance"
        node = shutil.which("node") or "node"
        cmd = [node, "--require", "@opentelemetry/auto-instrumentations-node/register", str(NODE_DIR / "app.js")]
        return cmd, env, str(node_env)


class Cluster:
    def __init__(self, services, env_dir, otlp_endpoint, protocol, workdir):
        self.services = {s.name: s for s in services}
        self.env_dir = env_dir
        self.otlp_endpoint = otlp_endpoint
        self.protocol = protocol
        self.workdir = Path(workdir)

    def start(self):
        for s in self.services.values():
            s.port = free_port()
        urls = {f"{s.name}_url": s.url for s in self.services.values()}
        for s in self.services.values():
            cmd, env, cwd = s.command_and_env(self.env_dir, self.otlp_endpoint, self.protocol, urls)
            if s.lang == "python":
                # Each instance runs in its own directory with a relative SQLite
                # path: db.name (and the SQLAlchemy span names "SELECT <db.name>")
                # are then stable across runs, as a real deployment's are.
                cwd = self.workdir / s.name
                cwd.mkdir(parents=True, exist_ok=True)
                env["APP_DB"] = f"{s.role}.sqlite"
            s.logfile = open(self.workdir / f"{s.name}.log", "wb")
            s.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                      stdout=s.logfile, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        pending = set(self.services)
        while pending:
            for name in list(pending):
                s = self.services[name]
                if s.proc.poll() is not None:
                    raise RuntimeError(f"service {name} exited with {s.proc.returncode} before it was ready:\n"
                                       + self.tail(s))
                try:
                    with socket.create_connection(("127.0.0.1", s.port), timeout=0.2):
                        pending.discard(name)
                except OSError:
                    pass
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"services not ready after 20s: {sorted(pending)}")
            if pending:
                time.sleep(0.05)

    def tail(self, s, n=4000):
        try:
            return (self.workdir / f"{s.name}.log").read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, grace=8.0):
        """SIGTERM every process group (the SDKs flush on it), wait, then SIGKILL leftovers."""
        procs = [s for s in self.services.values() if s.proc is not None]
        for s in procs:
            if s.proc.poll() is None:
                try:
                    os.killpg(s.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for s in procs:
            try:
                s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{s.name} did not stop within {grace}s of SIGTERM: killing its process group")
            try:
                os.killpg(s.proc.pid, signal.SIGKILL)  # the group may still hold children
            except ProcessLookupError:
                pass
            s.proc.wait()
            if s.logfile:
                s.logfile.close()


# ------------------------------------------------------------------ requests
class Recorder:
    def __init__(self):
        self.results = []
        self.lock = threading.Lock()

    def call(self, base, method, path, expect, headers=None, body=None, label=""):
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["content-type"] = "application/json"
        req = urllib.request.Request(base + path, data=data, method=method, headers=hdrs)
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                status, tid = resp.status, resp.headers.get("x-trace-id")
                resp.read()
        except urllib.error.HTTPError as e:
            status, tid = e.code, e.headers.get("x-trace-id")
            e.read()
        rec = {"label": label, "method": method, "path": path, "status": status, "expect": expect,
               "trace_id": tid, "ms": round((time.monotonic() - t0) * 1000, 1)}
        with self.lock:
            self.results.append(rec)
        return rec


# ----------------------------------------------------------------- scenarios
# Every scenario: services(), then fire(cluster, recorder, n); `settle` is how
# long to wait after the last answer so that slow downstream handlers (which
# outlive their caller's timeout) end their spans before SIGTERM.
EDGE = dict(lang="node", service_name="edge", version="5.2.1", legacy_env_key=True)


def svc_edge(**env):
    return Service("edge", env=env, **EDGE)


def svc_py(name, role, version, region="us-east-1", **env):
    return Service(name, "python", role=role, service_name=role, version=version, region=region, env=env)


def null_field_services():
    return [svc_edge(PROFILES_URL="{profiles_url}"), svc_py("profiles", "profiles", "4.0.2")]


def null_field_fire(c, r, n):
    edge, prof = c.services["edge"].url, c.services["profiles"].url
    r.call(edge, "GET", "/api/profile/1", 200, {"x-tenant": "acme"}, label="edge healthy")
    r.call(prof, "GET", "/profiles/2", 200, {"x-tenant": "acme"}, label="python healthy")
    for i in range(n):
        uid = 100 + i % 2
        r.call(edge, "GET", f"/api/profile/{uid}", 500, {"x-tenant": "legacy-import"},
               label="node TypeError in mapProfileResponse")
        r.call(prof, "GET", f"/profiles/{uid}", 500, {"x-tenant": "legacy-import"},
               label="python AttributeError in build_profile_view")
    r.call(edge, "GET", "/api/profile/3", 200, {"x-tenant": "globex"}, label="edge healthy")


def missing_secret_services():
    return [
        # Both instances opt in to the stable HTTP semantic conventions
        # (http.request.method, http.response.status_code, error.type ...),
        # the other Python services keep the instrumentation's default (old names).
        svc_py("payments_us", "payments", "3.1.0", region="us-east-1", PAYMENT_SIGNING_KEY="us-test-signing-key",
               OTEL_SEMCONV_STABILITY_OPT_IN="http"),
        svc_py("payments_eu", "payments", "3.1.0", region="eu-west-1", OTEL_SEMCONV_STABILITY_OPT_IN="http"),
    ]


def missing_secret_fire(c, r, n):
    us, eu = c.services["payments_us"].url, c.services["payments_eu"].url
    r.call(us, "POST", "/payments/checkout", 200, {"x-tenant": "acme"}, {"amount": 1200, "currency": "USD"},
           label="us-east-1 healthy")
    for i in range(n):
        r.call(eu, "POST", "/payments/checkout", 500, {"x-tenant": "acme" if i % 2 == 0 else "globex"},
               {"amount": 990 + i, "currency": "EUR"}, label="eu-west-1 KeyError PAYMENT_SIGNING_KEY")
    r.call(us, "POST", "/payments/checkout", 200, {"x-tenant": "globex"}, {"amount": 10, "currency": "USD"},
           label="us-east-1 healthy")


def orders_inventory_services():
    return [svc_py("orders", "orders", "2.14.0", INVENTORY_URL="{inventory_url}"),
            svc_py("inventory", "inventory", "1.9.3")]


def dependency_timeout_fire(c, r, n):
    orders = c.services["orders"].url
    r.call(orders, "GET", "/orders/1", 200, label="healthy")
    for i in range(n):
        r.call(orders, "POST", f"/orders/{1 + i % 2}/reserve", 500, {"x-tenant": "acme"},
               label="requests ReadTimeout (0.3s) on inventory reserve (1s)")


def pool_exhaustion_fire(c, r, n):
    orders = c.services["orders"].url
    r.call(orders, "GET", "/orders/1", 200, label="healthy")
    for i in range(n):
        holder = threading.Thread(target=r.call, args=(orders, "GET", "/orders/report", 200),
                                  kwargs={"label": "report holding the only pooled connection for 1s"})
        holder.start()
        time.sleep(0.15)
        r.call(orders, "GET", f"/orders/{1 + i % 2}", 500, {"x-tenant": "globex"},
               label="QueuePool limit reached (pool_timeout 0.3s)")
        holder.join()


def malformed_downstream_fire(c, r, n):
    orders = c.services["orders"].url
    r.call(orders, "GET", "/orders/1", 200, label="healthy")
    for i in range(n):
        r.call(orders, "GET", f"/orders/{1 + i % 2}/stock", 500, {"x-tenant": "acme"},
               label="inventory 200 with truncated JSON -> JSONDecodeError")


def three_tier_services():
    return [svc_edge(ORDERS_URL="{orders_url}"),
            svc_py("orders", "orders", "2.14.0", INVENTORY_URL="{inventory_url}"),
            svc_py("inventory", "inventory", "1.9.3")]


def two_down_fire(c, r, n):
    edge = c.services["edge"].url
    r.call(edge, "GET", "/api/orders/1", 200, {"x-tenant": "acme"}, label="healthy")
    for i in range(n):
        r.call(edge, "GET", f"/api/orders/{7 + i % 2}", 500, {"x-tenant": "initech"},
               label="inventory KeyError -> orders HTTPError -> edge Error")


def healthy_services():
    return three_tier_services() + [svc_py("profiles", "profiles", "4.0.2")]


def healthy_fire(c, r, n):
    edge = c.services["edge"].url
    prof = c.services["profiles"].url
    for i in range(n):
        r.call(edge, "GET", f"/api/orders/{1 + i % 2}", 200, {"x-tenant": "acme"}, label="edge->orders->inventory")
        r.call(prof, "GET", f"/profiles/{1 + i % 3}", 200, {"x-tenant": "acme"}, label="profiles")


SCENARIOS = {
    "null_field": (null_field_services, null_field_fire, 0.3),
    "missing_secret": (missing_secret_services, missing_secret_fire, 0.3),
    "dependency_timeout": (orders_inventory_services, dependency_timeout_fire, 1.2),
    "pool_exhaustion": (orders_inventory_services, pool_exhaustion_fire, 0.3),
    "malformed_downstream": (orders_inventory_services, malformed_downstream_fire, 0.3),
    "two_down": (three_tier_services, two_down_fire, 0.3),
    "healthy": (healthy_services, healthy_fire, 0.3),
}


def run_scenario(name, env_dir: Path, otlp_endpoint, protocol="http/protobuf", n=3, keep_logs=None):
    services_fn, fire, settle = SCENARIOS[name]
    for need in (env_dir / "venv" / "bin" / "opentelemetry-instrument", env_dir / "node" / "node_modules"):
        if not need.exists():
            raise SystemExit(f"{need} missing: run `run.py setup --env-dir {env_dir}` first")
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"faultline-scn-{name}-"))
    cluster = Cluster(services_fn(), env_dir, otlp_endpoint, protocol, workdir)
    rec = Recorder()
    ok = False
    try:
        cluster.start()
        log(f"{name}: services up in {time.monotonic() - t0:.1f}s: "
            + ", ".join(f"{s.name}={s.port}" for s in cluster.services.values()))
        fire(cluster, rec, n)
        time.sleep(settle)
        ok = True
    finally:
        cluster.stop()
        if not ok:
            for s in cluster.services.values():
                log(f"--- log of {s.name} ---\n{cluster.tail(s)}")
        if keep_logs:
            Path(keep_logs).mkdir(parents=True, exist_ok=True)
            for f in workdir.glob("*.log"):
                shutil.copy2(f, Path(keep_logs) / f"{name}.{f.name}")
        shutil.rmtree(workdir, ignore_errors=True)
    results = rec.results
    expected = [x for x in results if x["expect"] == 500]
    observed = [x for x in results if x["status"] == 500]
    mismatches = [x for x in results if x["status"] != x["expect"]]
    summary = {
        "scenario": name,
        "requests": len(results),
        "expected_500s": len(expected),
        "observed_500s": len(observed),
        "trace_ids": [x["trace_id"] for x in results],
        "expected_500_trace_ids": [x["trace_id"] for x in expected],
        "mismatches": mismatches,
        "elapsed_s": round(time.monotonic() - t0, 2),
    }
    return summary, results


# ------------------------------------------------------------------- capture
def capture(names, env_dir: Path, out_dir: Path, n, protocol="http/protobuf"):
    out_dir.mkdir(parents=True, exist_ok=True)
    py = env_dir / "venv" / "bin" / "python"
    failures = 0
    for name in names:
        tmp = Path(tempfile.mkdtemp(prefix="faultline-capture-"))
        port_file, out = tmp / "port", tmp / "spans.json"
        cmd = [str(py), str(HERE / "capture_otlp.py"), "--port", "0", "--out", str(out)]
        if protocol == "grpc":
            cmd += ["--grpc-port", "0", "--grpc-port-file", str(port_file)]
        else:
            cmd += ["--port-file", str(port_file)]
        proc = subprocess.Popen(cmd, start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("capture receiver did not start")
                time.sleep(0.05)
            endpoint = f"http://127.0.0.1:{port_file.read_text().strip()}"
            summary, results = run_scenario(name, env_dir, endpoint, protocol, n)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        spans = json.loads(out.read_text())["spans"]
        missing = [t for t in summary["trace_ids"] if t and not any(s["trace_id"] == t for s in spans)]
        dest = out_dir / f"{name}.json"
        shutil.copy2(out, dest)
        shutil.rmtree(tmp, ignore_errors=True)
        status = "OK" if not summary["mismatches"] and not missing else "MISMATCH"
        if status != "OK":
            failures += 1
        print(f"{name}: {status} {len(spans)} spans, {summary['requests']} requests, "
              f"{summary['observed_500s']}/{summary['expected_500s']} 500s, {dest.stat().st_size // 1024} KiB, "
              f"{summary['elapsed_s']}s" + (f", traces missing: {missing}" if missing else ""))
    return failures


# ---------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_setup = sub.add_parser("setup", help="create the venv and node_modules (idempotent)")
    p_run = sub.add_parser("run", help="run one scenario against an OTLP endpoint")
    p_run.add_argument("scenario", choices=sorted(SCENARIOS))
    p_run.add_argument("--otlp-endpoint", required=True, help="e.g. http://127.0.0.1:4318 (grpc: :4317)")
    p_run.add_argument("--protocol", default="http/protobuf", choices=["http/protobuf", "grpc"])
    p_run.add_argument("--requests", type=int, default=3, help="repetitions of the failing request (default 3)")
    p_run.add_argument("--keep-logs", help="copy the services' logs into this directory")
    p_cap = sub.add_parser("capture", help="run scenarios against capture_otlp.py and write fixtures")
    p_cap.add_argument("scenarios", nargs="*", default=["all"])
    p_cap.add_argument("--out-dir", type=Path, default=DEFAULT_FIXTURES)
    p_cap.add_argument("--requests", type=int, default=3)
    p_cap.add_argument("--protocol", default="http/protobuf", choices=["http/protobuf", "grpc"],
                       help="how the SDKs export to the capture receiver (fixtures are captured over http/protobuf)")
    sub.add_parser("list", help="list the scenarios")
    for p in (p_setup, p_run, p_cap):
        p.add_argument("--env-dir", type=Path, default=DEFAULT_ENV,
                       help=f"venv + node_modules location (default $FAULTLINE_SCENARIO_ENV or {DEFAULT_ENV})")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        print("\n".join(SCENARIOS))
        return 0
    env_dir = args.env_dir.resolve()
    if args.cmd == "setup":
        setup(env_dir)
        return 0
    if args.cmd == "run":
        summary, results = run_scenario(args.scenario, env_dir, args.otlp_endpoint, args.protocol,
                                        max(1, args.requests), args.keep_logs)
        for x in results:
            log(f"{x['method']} {x['path']} -> {x['status']} (expect {x['expect']}) {x['ms']}ms {x['trace_id']}")
        print(json.dumps(summary))
        return 1 if summary["mismatches"] else 0
    if args.cmd == "capture":
        names = list(SCENARIOS) if args.scenarios in (["all"], []) else args.scenarios
        unknown = [x for x in names if x not in SCENARIOS]
        if unknown:
            ap.error(f"unknown scenario(s) {unknown}; one of {sorted(SCENARIOS)}")
        return 1 if capture(names, env_dir, args.out_dir.resolve(), max(1, args.requests), args.protocol) else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
