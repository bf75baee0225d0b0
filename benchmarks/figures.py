"""Summaries shared by the benchmarks: percentiles and latency figures."""


def percentile(sorted_values, fraction):
    """Linear interpolation between closest ranks; None for no data."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def latency_summary(seconds, digits=2):
    """count, p50/p95/p99/max/mean in milliseconds, of durations given in seconds."""
    values = sorted(seconds)

    def ms(value):
        return None if value is None else round(value * 1000, digits)

    return {
        "count": len(values),
        "p50_ms": ms(percentile(values, 0.50)), "p95_ms": ms(percentile(values, 0.95)),
        "p99_ms": ms(percentile(values, 0.99)), "max_ms": ms(values[-1] if values else None),
        "mean_ms": ms(sum(values) / len(values) if values else None),
    }
