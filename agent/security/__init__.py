"""Who is calling and what they may do: shared by the agent, the controller and fleetctl.

identity.py reads a verified peer certificate into an Identity; policy.py decides whether an
identity may use a verb on a scope; rules.py says which verb each RPC needs; guard.py is the
one gRPC interceptor per server that applies them. All but guard.py are pure.
"""
