"""The mesh certificate authority: SPIFFE X.509 SVIDs for workloads, issued by the control plane.

`spiffe` (IDs), `certs` (X.509 builders), `store` (the CA directory), `authority` (keys, signing,
root rotation), `grants` (which token gets which identity), `api` (the sans-IO signing API),
`http1` + `server` (its HTTPS shell). See docs/ca.md.
"""
