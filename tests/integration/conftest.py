"""The integration tier: the operator on the real control plane, over sidecar processes."""

from support.fixtures import (  # noqa: F401
    core,
    custom,
    operator,
    sidecars,
    start_operator,
    token_secret,
)
