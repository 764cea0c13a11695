# Session history: how often the subject was denied recently decides whether it may go on.
#
# context.recent_denials is the number of denials of the subject in the last 15 minutes, put
# there by the context provider the manifest declares (never what a client sent). Without it,
# or with anything but a number, this package denies.
package clinic_session

import rego.v1

decision := {
	"allow": allow,
	"obligations": obligations,
	"reasons": reasons,
}

# ANCHOR: rules
# From this many recent denials on, a second factor is required.
step_up_after := 3

# From this many on, the subject is refused.
refuse_after := 5

denials := input.context.recent_denials

counted if is_number(denials)

strong if input.context.acr == "urn:example:mfa"

default allow := false

allow if {
	counted
	denials < refuse_after
}

obligations contains {"type": "step_up", "acr_values": "urn:example:mfa", "max_age": 300} if {
	allow
	denials >= step_up_after
	not strong
}

reasons contains "too many recent denials" if {
	counted
	denials >= refuse_after
}

reasons contains "no session history" if not counted
# ANCHOR_END: rules
