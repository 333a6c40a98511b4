"""The static C executor: kernel-call graph, in-place calls, memory plan, C emission, runtime files."""
