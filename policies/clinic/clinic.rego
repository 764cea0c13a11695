# Access to the clinic service.
#
# Roles (the `role` claim): doctor, nurse, admin, auditor. Clinic membership: the `clinics`
# claim, a list of clinic ids. The input is the access request Warden's HTTP PEP builds:
# resource.id is the matched route template, resource.properties.params its parameters.
package clinic

import rego.v1

decision := {
	"allow": allow,
	"obligations": obligations,
	"reasons": reasons,
}

config := data.clinic_config

role := input.subject.properties.role

method := input.action.name

route := input.resource.id

params := input.resource.properties.params

staff if role in config.staff_roles

carer if role in config.care_roles

member if params.clinic_id in input.subject.properties.clinics

patient_routes := {
	"/clinics/{clinic_id}/patients",
	"/clinics/{clinic_id}/patients/{patient_id}",
	"/clinics/{clinic_id}/patients/{patient_id}/visits",
}

record_route := "/clinics/{clinic_id}/patients/{patient_id}/record"

default allow := false

# Anyone, signed in or not, may ask whether the service is up.
allow if {
	method == "GET"
	route == "/health"
}

# Staff may list the clinics.
allow if {
	method == "GET"
	route == "/clinics"
	staff
}

# Doctors and nurses read the patients and visits of their own clinics; admins of every clinic.
allow if {
	method == "GET"
	route in patient_routes
	carer
	member
}

allow if {
	method == "GET"
	route in patient_routes
	role == "admin"
}

# Auditors review the patient lists of every clinic, pseudonymised (see the redactions below).
allow if {
	method == "GET"
	route == "/clinics/{clinic_id}/patients"
	role == "auditor"
}

# Doctors record visits for patients of their clinics.
allow if {
	method == "POST"
	route == "/clinics/{clinic_id}/patients/{patient_id}/visits"
	role == "doctor"
	member
}

# The full record (SSN, notes) only for doctors of the clinic, after a recent MFA.
allow if {
	method == "GET"
	route == record_route
	role == "doctor"
	member
}

# Only admins delete patients.
allow if {
	method == "DELETE"
	route == "/clinics/{clinic_id}/patients/{patient_id}"
	role == "admin"
}

# Admins read the service's decision metrics.
allow if {
	method == "GET"
	route == "/metrics"
	role == "admin"
}

# Auditors and admins read the audit log.
allow if {
	method == "GET"
	route == "/audit-log"
	role in {"auditor", "admin"}
}

# What each role may see of a patient outside the full record: the handlers return every
# field, the PEP hides what the role may not see.
obligations contains {"type": "redact", "paths": ["$..ssn"], "with": "last4"} if {
	route in patient_routes
	carer
}

obligations contains {"type": "redact", "paths": ["$..notes"], "with": "remove"} if {
	route in patient_routes
	role == "nurse"
}

obligations contains {"type": "redact", "paths": ["$..ssn", "$..notes"], "with": "remove"} if {
	route in patient_routes
	role in {"admin", "auditor"}
}

obligations contains {"type": "redact", "paths": ["$[*].name"], "with": "hash"} if {
	route in patient_routes
	role == "auditor"
}

obligations contains {"type": "redact", "paths": ["$[*].birth_date"], "with": "year"} if {
	route in patient_routes
	role == "auditor"
}

obligations contains step_up if route == record_route

step_up := {
	"type": "step_up",
	"acr_values": config.step_up.acr_values,
	"max_age": config.step_up.max_age,
}

obligations contains {"type": "audit", "level": "high", "tags": ["hipaa-164.312(b)"]} if {
	route == record_route
}

obligations contains {"type": "audit", "level": "high", "tags": ["hipaa-164.312(b)"]} if {
	method == "DELETE"
}

obligations contains {"type": "audit", "level": "medium", "tags": ["hipaa-164.312(b)"]} if {
	route == "/audit-log"
}

reasons contains "not a member of the clinic" if {
	params.clinic_id
	not member
	role != "admin"
}

reasons contains "role may not do this" if not allow
