using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Millrace.Dashboard;

/// <summary>
/// The <c>Millrace</c> meter in the Prometheus text format (version 0.0.4), for a scrape of the dashboard's <c>/metrics</c>:
/// every instrument the meter has, read at the scrape, with OpenTelemetry's naming rules — dots become underscores, the unit
/// a suffix (<c>s</c> → <c>_seconds</c>, <c>By</c> → <c>_bytes</c>; <c>{item}</c> and the like none), and counters end in
/// <c>_total</c>. <c>millrace.process.items_in</c> is <c>millrace_process_items_in_total{process="square",run="..."}</c>.
/// </summary>
internal static class PrometheusText
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    public static string Scrape()
    {
        var series = new Dictionary<Instrument, List<(double Value, KeyValuePair<string, object?>[] Tags)>>();
        using (var listener = new MeterListener())
        {
            listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "Millrace") l.EnableMeasurementEvents(instrument);
            };
            void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
            {
                lock (series)
                {
                    if (!series.TryGetValue(instrument, out var list)) series[instrument] = list = new();
                    list.Add((value, tags.ToArray()));
                }
            }
            listener.SetMeasurementEventCallback<long>((i, v, t, _) => Add(i, v, t));
            listener.SetMeasurementEventCallback<double>((i, v, t, _) => Add(i, v, t));
            listener.Start();
            listener.RecordObservableInstruments();
        }
        var text = new StringBuilder();
        foreach (var (instrument, measurements) in series.OrderBy(s => s.Key.Name, StringComparer.Ordinal))
        {
            bool counter = instrument.GetType().Name.StartsWith("ObservableCounter", StringComparison.Ordinal) ||
                           instrument.GetType().Name.StartsWith("Counter", StringComparison.Ordinal);
            string name = Name(instrument.Name, instrument.Unit, counter);
            text.Append("# HELP ").Append(name).Append(' ').Append(Escape(instrument.Description ?? "", help: true)).Append('\n');
            text.Append("# TYPE ").Append(name).Append(' ').Append(counter ? "counter" : "gauge").Append('\n');
            foreach (var (value, tags) in measurements)
            {
                text.Append(name);
                if (tags.Length > 0)
                {
                    text.Append('{');
                    for (int i = 0; i < tags.Length; i++)
                    {
                        if (i > 0) text.Append(',');
                        text.Append(Label(tags[i].Key)).Append("=\"").Append(Escape(Convert.ToString(tags[i].Value, CultureInfo.InvariantCulture) ?? "", help: false)).Append('"');
                    }
                    text.Append('}');
                }
                text.Append(' ').Append(Number(value)).Append('\n');
            }
        }
        return text.ToString();
    }

    internal static string Name(string instrument, string? unit, bool counter)
    {
        string name = Label(instrument);
        string? suffix = unit switch
        {
            "s" => "seconds",
            "ms" => "milliseconds",
            "By" => "bytes",
            _ => null, // {item}, {error}, {checkpoint}: annotations, not units
        };
        if (suffix is not null && !name.EndsWith("_" + suffix, StringComparison.Ordinal)) name += "_" + suffix;
        if (counter) name += "_total";
        return name;
    }

    private static string Label(string name)
    {
        var text = new StringBuilder(name.Length);
        foreach (char c in name) text.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
        if (text.Length == 0 || char.IsAsciiDigit(text[0])) text.Insert(0, '_');
        return text.ToString();
    }

    private static string Escape(string text, bool help) =>
        help ? text.Replace("\\", "\\\\").Replace("\n", "\\n") : text.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");

    private static string Number(double value) =>
        double.IsPositiveInfinity(value) ? "+Inf" : double.IsNegativeInfinity(value) ? "-Inf" : double.IsNaN(value) ? "NaN" : value.ToString("R", CultureInfo.InvariantCulture);
}
