package schemas

import "testing"

// TestNewSerdeOptions: without options a Serde names subjects TopicName and
// auto-registers, as most callers (and registry.auto_register's default)
// want; options replace each default.
func TestNewSerdeOptions(t *testing.T) {
	s := NewSerde(nil, nil)
	if s.strategy != TopicName || !s.autoRegister {
		t.Errorf("defaults: strategy %v auto-register %v, want topic_name and true", s.strategy, s.autoRegister)
	}
	s = NewSerde(nil, nil, WithSubjectStrategy(RecordName), WithAutoRegister(false), nil)
	if s.strategy != RecordName || s.autoRegister {
		t.Errorf("options: strategy %v auto-register %v, want record_name and false", s.strategy, s.autoRegister)
	}
	readers := map[string]*Schema{"t.A": nil}
	s = NewSerde(nil, readers)
	readers["t.B"] = nil
	if len(s.readers) != 1 {
		t.Error("NewSerde must copy the readers map")
	}
}
