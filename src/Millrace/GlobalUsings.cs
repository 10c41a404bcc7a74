// The core's internal namespaces, one per folder (see docs/architecture.md).
global using Millrace.Engine;
global using Millrace.Monitoring;
global using Millrace.Placements;
global using Millrace.Codecs;
