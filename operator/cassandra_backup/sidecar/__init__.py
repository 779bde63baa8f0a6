"""The node snapshot sidecar: an HTTP agent beside Cassandra, and the client that talks to it.

The sidecar is the one place that runs `nodetool` and reads the data directories; the
operator only ever speaks HTTP to it. The package is split so that each side can be read
alone: `api` holds the wire models both sides share, `nodetool` and `inventory` are the
server's two views of the node (what Cassandra is asked to do, what is on disk),
`service` holds the rules that make a repeated request safe, `server` is the aiohttp
wiring and command line, and `client` is what the operator imports.
"""
