"""Stage 4, threats: camera geometry and ranging (`camera`), optical-flow growth (`flow`, `linefit`), time to
collision (`ttc`), in-path and the lead (`lead`), the forward collision warning (`fcw`)."""
