"""Fine-tuning operations: `jobs` (the web side: submit, estimate, cancel, ask for merges and answers),
`runner` (the GPU worker side: run a job, relay its events, reap the jobs of dead workers) and
`playground` (answers and merges, in child processes)."""
