# Access to the clinic's database through Warden's SQL PEP.
#
# The input is the access request the SQL PEP builds, one per (relation, operation):
# action.name is select, insert, update or delete; resource.properties.table the relation,
# resource.properties.columns the columns involved. The subject carries `role` (nurse, admin,
# auditor) and, for nurses, `clinic`.
#
# - nurses read and write the patients and visits of their own clinic; patients' SSNs show
#   their last four characters, birth dates their year, notes nothing; they may delete visits
#   but not patients;
# - admins do anything to the clinic's tables and views, unfiltered;
# - auditors read the audit log only (every read is audited).
package clinic_data

import rego.v1

role := input.subject.properties.role

table := input.resource.properties.table

action := input.action.name

tenant_tables := {"patients", "visits"}

decision := {
	"allow": allow,
	"obligations": obligations,
	"reasons": reasons,
}

default allow := false

allow if {
	role == "nurse"
	table in tenant_tables
	action in {"select", "insert", "update"}
	input.subject.properties.clinic
}

allow if {
	role == "nurse"
	table == "visits"
	action == "delete"
	input.subject.properties.clinic
}

allow if {
	role == "admin"
	table in data.clinic_data_config.admin_relations
}

allow if {
	role == "auditor"
	table == "audit_log"
	action == "select"
}

obligations contains {
	"type": "filter_rows",
	"table": table,
	"where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]},
} if {
	allow
	role == "nurse"
}

obligations contains {
	"type": "mask_columns",
	"table": "patients",
	"columns": {"ssn": "last4", "birth_date": "year", "notes": "null"},
} if {
	allow
	role == "nurse"
	table == "patients"
}

obligations contains {"type": "audit", "level": "medium", "tags": ["hipaa-164.312(b)"]} if {
	allow
	role == "auditor"
}

reasons contains "only the clinic's own relations are open to this role" if not allow
