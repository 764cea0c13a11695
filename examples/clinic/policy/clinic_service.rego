# The clinic service's own rules for its database, beside the `policies/clinic-data` package.
#
# The SQL PEP of the example asks both packages; a permit of either wins, with its obligations
# (see `example_clinic::data`). clinic-data knows nurses, admins and auditors; this adds:
#
# - doctors read the patients and visits of their own clinic and record visits there, rows
#   filtered to that clinic. Nothing is masked here: what a route shows of a patient is the HTTP
#   policy's business (`policies/clinic`: the SSN's last four, the full record only after a
#   recent MFA);
# - the service itself (subject type `service`, which the example never builds from a token)
#   reads the clinic directory and appends to the audit log.
package clinic_service

import rego.v1

role := input.subject.properties.role

table := input.resource.properties.table

action := input.action.name

decision := {
	"allow": allow,
	"obligations": obligations,
}

default allow := false

doctor if {
	input.subject.type == "user"
	role == "doctor"
	input.subject.properties.clinic
}

service if {
	input.subject.type == "service"
	input.subject.id == "clinic-service"
}

allow if {
	doctor
	table in {"patients", "visits"}
	action in {"select", "insert"}
}

allow if {
	service
	table == "clinics"
	action == "select"
}

allow if {
	service
	table == "audit_log"
	action == "insert"
}

obligations contains {
	"type": "filter_rows",
	"table": table,
	"where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]},
} if {
	allow
	doctor
}
