"""``stepline_store``: Stepline's Postgres store, shared by the gateway and the operator.

``sql/`` holds the numbered migrations and the named queries (the only SQL in Stepline), ``schema`` applies
or verifies the migrations under an advisory lock, ``pool`` opens connections with the JSON codec and runs
named queries. It depends on the SDK package only; the gateway and the operator depend on it.
"""
