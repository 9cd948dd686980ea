"""Every change nbtui makes, shared by the CLI and the TUI, one module per verb.

``gate`` (the readonly gate, who runs nbtui, ids no URL can hold, audit targets), ``kernels``
(interrupt, restart, the re-check), ``kill`` (plan and execute kills: ``plan_kill`` is the one
planner), ``cull`` (policies and their plans, the cull lock), ``hubservers`` (stop a hub
user's server) and ``migrate`` (rebind, migrate, adopt). Each action re-checks its target
right before acting and writes its audit lines. Import from the module that holds a thing.
"""
