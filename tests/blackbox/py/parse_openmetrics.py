"""Parses an OpenMetrics exposition from stdin with prometheus_client's strict parser
(it raises on anything the specification forbids) and prints a JSON summary: the
family names and every exemplar with the series it hangs on."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families, exemplars = [], []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({"name": family.name, "type": family.type})
    for sample in family.samples:
        if sample.exemplar is not None:
            exemplars.append(
                {
                    "sample": sample.name,
                    "labels": sample.labels,
                    "exemplar": sample.exemplar.labels,
                    "value": sample.exemplar.value,
                }
            )
print(json.dumps({"families": families, "exemplars": exemplars}))
