"""How every job starts and where it runs: the shared command line and config precedence
(``launcher``), submission to a job server (``submit``), the Ray session (``ray_session``),
the Ray Train driver of the training jobs (``training``) and the frame of the jobs that
need no Ray (``one_process``). Entrypoints themselves live in ``jobs/``."""
