package processors

// registerBuiltins registers ordo's built-in processor types. Each lives in
// its own file with its test beside it.
func registerBuiltins(r *Registry) {
	r.MustRegister("validate", newValidate)
	r.MustRegister("enrich_table", newEnrichTable)
	r.MustRegister("enrich_http", newEnrichHTTP)
	r.MustRegister("orchestrate", newOrchestrate)
}
