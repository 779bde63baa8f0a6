#!/usr/bin/env bash
# End to end on a kind cluster: builds both images, installs the chart, runs a one-node
# Cassandra StatefulSet with the sidecar (examples/sidecar), writes a row, takes a backup
# with a BackupRun and waits for it to succeed. Needs Docker; kind is built with Go into
# the project's cache when it is not there. Not part of CI, which has no Docker.
#
#   hack/kind-e2e.sh            # the cluster is deleted at the end
#   KEEP_CLUSTER=1 hack/kind-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."

KIND_VERSION=${KIND_VERSION:-v0.29.0}
CLUSTER=${CLUSTER:-cassandra-backup-e2e}
TAG=${TAG:-e2e}
CACHE=${CASSANDRA_BACKUP_CACHE:-$HOME/.cache/cassandra-backup-operator}
BIN="$CACHE/bin"
KUBECTL=${KUBECTL:-.venv/bin/kubectl}
NS=cassandra
OPERATOR_NS=cassandra-backup-system

say() { printf '[kind-e2e] %s\n' "$*" >&2; }

command -v docker >/dev/null 2>&1 || { say "docker is not installed"; exit 1; }
docker info >/dev/null 2>&1 || { say "docker is installed but its daemon does not answer"; exit 1; }
[[ -x $KUBECTL ]] || { say "$KUBECTL not found: run make install first"; exit 1; }

if [[ ! -x $BIN/kind ]]; then
  command -v go >/dev/null 2>&1 || { say "kind is not in $BIN and go is not installed"; exit 1; }
  say "building kind $KIND_VERSION into $BIN"
  GOBIN="$BIN" CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION"
fi
HELM=$(hack/build-tools.sh helm)/helm
KIND=$BIN/kind

say "building the images (tag $TAG)"
docker build -f images/Dockerfile.operator -t "cassandra-backup-operator:$TAG" .
docker build -f images/Dockerfile.sidecar -t "cassandra-backup-sidecar:$TAG" .

if ! "$KIND" get clusters | grep -qx "$CLUSTER"; then
  "$KIND" create cluster --name "$CLUSTER" --wait 180s
fi
KUBECONFIG_FILE=$(mktemp)
cleanup() {
  rm -f "$KUBECONFIG_FILE"
  if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
    "$KIND" delete cluster --name "$CLUSTER"
  fi
}
trap cleanup EXIT
"$KIND" get kubeconfig --name "$CLUSTER" > "$KUBECONFIG_FILE"
export KUBECONFIG=$KUBECONFIG_FILE
k() { "$KUBECTL" "$@"; }

"$KIND" load docker-image --name "$CLUSTER" "cassandra-backup-operator:$TAG" \
  "cassandra-backup-sidecar:$TAG"

say "installing the chart"
"$HELM" upgrade --install backups helm/cassandra-backup-operator \
  --namespace "$OPERATOR_NS" --create-namespace \
  --set image.tag="$TAG" --set logFormat=text --wait --timeout 5m

say "starting Cassandra with the sidecar"
k create namespace "$NS" --dry-run=client -o yaml | k apply -f -
k -n "$NS" create secret generic backup-sidecar-token \
  --from-literal=token="$(openssl rand -hex 32)" --dry-run=client -o yaml | k apply -f -
k apply -f examples/sidecar/statefulset.yaml
k -n "$NS" patch statefulset cassandra --type merge -p '{"spec": {"replicas": 1}}'
k -n "$NS" set image statefulset/cassandra "backup-sidecar=cassandra-backup-sidecar:$TAG"
k -n "$NS" rollout status statefulset/cassandra --timeout 15m

say "writing a row to keyspace demo"
k -n "$NS" exec cassandra-0 -c cassandra -- cqlsh -e "
  CREATE KEYSPACE IF NOT EXISTS demo
    WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
  CREATE TABLE IF NOT EXISTS demo.items (id int PRIMARY KEY, name text);
  INSERT INTO demo.items (id, name) VALUES (1, 'first');"
k -n "$NS" exec cassandra-0 -c cassandra -- nodetool flush demo

say "backing up with a BackupRun"
k apply -f examples/20-backuprun-now.yaml
if ! k -n "$NS" wait backuprun/before-upgrade --for=jsonpath='{.status.phase}'=Succeeded \
  --timeout 5m; then
  k -n "$NS" get backuprun before-upgrade -o yaml
  k -n "$OPERATOR_NS" logs deployment/backups-cassandra-backup-operator --tail 100
  say "FAILED: the run did not succeed"
  exit 1
fi
k -n "$NS" get backupruns
k -n "$NS" exec cassandra-0 -c cassandra -- nodetool listsnapshots
say "PASSED: snapshot before-upgrade taken through the sidecar"
