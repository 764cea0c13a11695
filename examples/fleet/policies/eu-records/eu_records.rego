package eu_records

# This package never denies on its own: beside the clinic package (deny-overrides), it adds an
# audit record to every read of patient data that the clinic package permits.
decision := {"allow": true, "obligations": obligations, "reasons": []}

obligations contains {"type": "audit", "level": "high", "tags": ["gdpr-art-30"]} if {
	input.action.name == "GET"
	contains(input.resource.id, "/patients")
}
