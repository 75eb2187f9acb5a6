package processors

// registerBuiltins registers ordo's built-in processor types. Each lives in
// its own file with its test beside it.
func registerBuiltins(r *Registry) {
}
