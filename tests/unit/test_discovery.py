"""Node discovery: selectors in list-API syntax, pods and endpoints to nodes."""

from __future__ import annotations

from cassandra_backup import models
from cassandra_backup.discovery import nodes_from_endpoints, nodes_from_pods, selector_string
from cassandra_backup.kube import Pod

TOKEN = models.SecretKeyRef(name="tok", key="token")


def test_selector_string_covers_labels_and_every_operator() -> None:
    selector = models.LabelSelector.model_validate({
        "matchLabels": {"app": "cassandra", "dc": "dc1"},
        "matchExpressions": [
            {"key": "rack", "operator": "In", "values": ["r1", "r2"]},
            {"key": "tier", "operator": "NotIn", "values": ["test"]},
            {"key": "backup", "operator": "Exists"},
            {"key": "skip", "operator": "DoesNotExist"},
        ],
    })
    assert selector_string(selector) == (
        "app=cassandra,dc=dc1,rack in (r1,r2),tier notin (test),backup,!skip")


def test_pods_become_nodes_and_unready_pods_carry_the_reason() -> None:
    backend = models.SidecarBackend(podSelector=models.LabelSelector(), port=9200,
                                    tokenSecret=TOKEN)
    pods = [Pod(name="c-1", ip="10.0.0.2", ready=False, reason="pod c-1 is not Ready"),
            Pod(name="c-0", ip="10.0.0.1", ready=True, reason=None)]
    nodes = nodes_from_pods(pods, backend)
    assert [(n.pod, n.address, n.url) for n in nodes] == [
        ("c-0", "10.0.0.1", "http://10.0.0.1:9200"),
        ("c-1", "10.0.0.2", "http://10.0.0.2:9200"),
    ]
    assert nodes[0].unavailable is None
    assert nodes[1].unavailable == "pod c-1 is not Ready"


def test_endpoints_become_nodes_over_https_when_a_ca_is_given() -> None:
    backend = models.SidecarBackend(endpoints=["db1.example:9105", "[::1]:9105"],
                                    tokenSecret=TOKEN, caSecret=TOKEN)
    nodes = nodes_from_endpoints(backend)
    assert [(n.address, n.url) for n in nodes] == [
        ("db1.example", "https://db1.example:9105"),
        ("::1", "https://[::1]:9105"),
    ]
