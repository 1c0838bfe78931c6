"""The notebooks' library side: the headless runner, each notebook's step as one call, the
widgets, the plots and the statistics they show.

Owns: `runner` (nbclient execution), `parameters` (papermill-style parameters), `steps`,
`widgets`, `plots`, `stats`.
May import: every other subpackage except `cli`; nothing imports it but `cli`.
"""
