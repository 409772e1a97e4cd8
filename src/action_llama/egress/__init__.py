"""Egress control: which hosts a run may reach, and the proxy and firewall that enforce it.

`rules` (entries and matching, standard library only, imported by the proxy in its container),
`policy` (an agent's effective allow list and where each entry comes from).
"""
