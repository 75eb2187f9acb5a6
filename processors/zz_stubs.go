package processors

func newEnrichHTTP(spec Spec, deps Deps) (Processor, error)  { return nil, nil }
