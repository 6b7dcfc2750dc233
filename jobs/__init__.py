"""How WikiGraph work is launched: the CLI, planning, executors, results and run bookkeeping."""
