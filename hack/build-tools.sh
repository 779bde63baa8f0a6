#!/usr/bin/env bash
# Builds the real binaries the tests and the demo run: kube-apiserver and
# kube-controller-manager (from the k8s.io/kubernetes module), etcd (from its
# own module) and helm. They land in a cache outside the repository and are
# built once; a second call finds them and returns at once.
#
#   hack/build-tools.sh [kube|etcd|helm|all]
#
# The cache is $CASSANDRA_BACKUP_CACHE (default ~/.cache/cassandra-backup-operator).
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.17}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE=${CASSANDRA_BACKUP_CACHE:-$HOME/.cache/cassandra-backup-operator}
BIN="$CACHE/bin"
mkdir -p "$BIN"

# Two test sessions starting together must not build side by side: the second waits for
# the first, then finds the stamps and returns. (flock is util-linux; without it, no lock.)
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.build.lock"
  flock 9
fi

say() { printf '[build-tools] %s\n' "$*" >&2; }

need_go() {
  if ! command -v go >/dev/null 2>&1; then
    say "go is not on PATH: install Go (https://go.dev/dl/), or set KUBEBUILDER_ASSETS" \
      "to a folder holding etcd and kube-apiserver"
    exit 1
  fi
}

# Go prints nothing while it compiles; a heartbeat shows the build is alive.
with_heartbeat() {
  local what=$1; shift
  local started=$SECONDS
  "$@" &
  local pid=$!
  local next=$((started + 20))
  # Polled every second, so the next step starts as soon as the build ends.
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( SECONDS >= next )) && kill -0 "$pid" 2>/dev/null; then
      say "$what: still building ($((SECONDS - started)) s)"
      next=$((next + 20))
    fi
  done
  wait "$pid"
  say "$what: built in $((SECONDS - started)) s"
}

build_kube() {
  local stamp="$BIN/.kube-$KUBE_VERSION"
  # The version check also catches binaries built before their version was stamped in.
  if [[ -f "$stamp" && -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" ]] \
    && [[ "$("$BIN/kube-apiserver" --version 2>/dev/null)" == "Kubernetes $KUBE_VERSION" ]]; then
    return
  fi
  rm -f "$stamp"
  local minor=${KUBE_VERSION#v1.}
  local staging_version="v0.$minor"
  local work="$CACHE/build/kube-$KUBE_VERSION"
  mkdir -p "$work"
  need_go
  say "kube-apiserver and kube-controller-manager $KUBE_VERSION (a first build takes minutes)"

  # A throwaway module that requires k8s.io/kubernetes and replaces each of its
  # staging modules (which upstream points at ./staging) with the published
  # v0.x release of the same minor version.
  local modfile
  modfile=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module cassandra-backup-operator/kube-tools"
    echo
    echo "go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    sed -n '/^replace (/,/^)/p' "$modfile" | grep -E '^\s+k8s\.io/' \
      | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$work/go.mod"
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$work" && GOFLAGS=-mod=mod go mod download)
  # Upstream's release scripts stamp the version in at link time; without it the server
  # reports v0.0.0-master, which kubectl cannot parse and Helm's kubeVersion checks reject.
  local ldflags="-s"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1"
    ldflags+=" -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  local component
  for component in kube-apiserver kube-controller-manager; do
    with_heartbeat "$component" \
      env -C "$work" GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" \
        -o "$BIN/$component" "k8s.io/kubernetes/cmd/$component"
  done
  touch "$stamp"
  say "kube binaries ready in $BIN"
}

build_etcd() {
  local stamp="$BIN/.etcd-$ETCD_VERSION"
  [[ -f "$stamp" && -x "$BIN/etcd" ]] && return
  need_go
  say "etcd $ETCD_VERSION"
  # etcd's server module carries replace directives, so `go install mod@v`
  # refuses it; a throwaway module that requires it builds it as a dependency.
  local work="$CACHE/build/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  printf 'module cassandra-backup-operator/etcd-tools\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')" "$ETCD_VERSION" > "$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$work/tools.go"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
  with_heartbeat etcd env -C "$work" GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags=-s \
    -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  touch "$stamp"
  say "etcd ready in $BIN"
}

build_helm() {
  local stamp="$BIN/.helm-$HELM_VERSION"
  if [[ -f "$stamp" && -x "$BIN/helm" ]] \
    && [[ "$("$BIN/helm" version --short 2>/dev/null)" == "$HELM_VERSION"* ]]; then
    return
  fi
  rm -f "$stamp"
  need_go
  say "helm $HELM_VERSION"
  # Helm's own default is the minor version only ("v3.22"); its release build sets the rest.
  with_heartbeat helm env GOBIN="$BIN" CGO_ENABLED=0 go install -trimpath \
    -ldflags="-s -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch "$stamp"
  say "helm ready in $BIN"
}

case "${1:-all}" in
  kube) build_kube ;;
  etcd) build_etcd ;;
  helm) build_helm ;;
  all) build_etcd; build_kube; build_helm ;;
  *) echo "usage: $0 [kube|etcd|helm|all]" >&2; exit 2 ;;
esac
echo "$BIN"
