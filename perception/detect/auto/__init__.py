"""`detector.backend: auto` on a CPU: the candidates per CPU (`machine`), the timed trial and decision
(`choose`), its cache (`choice_cache`) and the recall check of reduced precision (`accuracy`)."""
