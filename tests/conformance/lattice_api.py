#!/usr/bin/env python3
"""Conformance and bad-input checks of latticed's VPC Lattice API, with boto3.

    lattice_api.py conformance ENDPOINT CREDENTIALS_FILE VPC_A VPC_B
    lattice_api.py bad-input   ENDPOINT CREDENTIALS_FILE VPC_A

conformance: walks botocore's model. Every operation latticed supports gets a
create/get/list/update/delete round trip; every answer is parsed by botocore
and then checked against the operation's output shape (required members,
types, enums), since botocore's parser alone accepts almost anything. Every
other operation must answer a ValidationException saying it is not supported.
The run fails if any operation of the model was neither exercised nor refused.

bad-input: for every supported operation, each required member missing, each
enum member out of range, each name one character too long; malformed JSON,
unknown identifiers and a 10 MB body. Each must get the right error, and a
snapshot of every List operation must be the same before and after.

Ends with one line 'N passed, M failed'.
"""

import configparser
import datetime
import json
import sys
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
from botocore.exceptions import ClientError

REGION = "us-east-1"
PASSED, FAILED = [], []


def check(cond, what):
    (PASSED if cond else FAILED).append(what)
    if not cond:
        print(f"FAIL {what}", flush=True)


def client(endpoint, creds, validate=True):
    return boto3.client(
        "vpc-lattice",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=creds[0],
        aws_secret_access_key=creds[1],
        config=botocore.config.Config(
            parameter_validation=validate, retries={"max_attempts": 1}
        ),
    )


def read_creds(path):
    c = configparser.ConfigParser()
    c.read(path)
    return c["default"]["aws_access_key_id"], c["default"]["aws_secret_access_key"]


# ---------------------------------------------------------------- shapes


def shape_problems(shape, value, path="$"):
    """Problems of a parsed value against a botocore shape."""
    t = shape.type_name
    out = []
    if t == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected object, got {type(value).__name__}"]
        for req in shape.required_members:
            if req not in value:
                out.append(f"{path}.{req}: required member missing")
        for name, member in shape.members.items():
            if name in value and member.serialization.get("location") is None:
                out += shape_problems(member, value[name], f"{path}.{name}")
        extra = set(value) - set(shape.members) - {"ResponseMetadata"}
        if extra:
            out.append(f"{path}: members not in the model: {sorted(extra)}")
    elif t == "list":
        if not isinstance(value, list):
            return [f"{path}: expected list"]
        for i, v in enumerate(value):
            out += shape_problems(shape.member, v, f"{path}[{i}]")
    elif t == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected map"]
        for k, v in value.items():
            out += shape_problems(shape.value, v, f"{path}.{k}")
    elif t == "string":
        if not isinstance(value, str):
            out.append(f"{path}: expected string")
        elif shape.enum and value not in shape.enum:
            out.append(f"{path}: {value!r} not in enum {shape.enum}")
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{path}: expected integer")
    elif t == "boolean":
        if not isinstance(value, bool):
            out.append(f"{path}: expected boolean")
    elif t == "timestamp":
        if not isinstance(value, datetime.datetime):
            out.append(f"{path}: expected timestamp")
    return out


class Walker:
    def __init__(self, c):
        self.c = c
        self.model = c.meta.service_model
        self.exercised = set()

    def call(self, op, **kw):
        """Calls op (PascalCase), checks the answer against the model."""
        method = getattr(self.c, self.model.operation_model(op).name and _snake(op))
        resp = method(**kw)
        self.exercised.add(op)
        out = self.model.operation_model(op).output_shape
        body = {k: v for k, v in resp.items() if k != "ResponseMetadata"}
        problems = shape_problems(out, body) if out is not None else []
        expected = self.model.operation_model(op).http.get("responseCode", 200)
        status = resp["ResponseMetadata"]["HTTPStatusCode"]
        check(not problems and status == expected, f"{op}: {problems or ''} status {status} (model {expected})")
        return resp


def _snake(name):
    import botocore

    return botocore.xform_name(name)


# ---------------------------------------------------------------- conformance


def conformance(endpoint, creds, vpc_a, vpc_b):
    w = Walker(client(endpoint, creds))
    call = w.call
    sn = call("CreateServiceNetwork", name="conf-net", clientToken="tok-1", tags={"k": "v"})
    again = call("CreateServiceNetwork", name="conf-net", clientToken="tok-1", tags={"k": "v"})
    check(again["id"] == sn["id"], "CreateServiceNetwork: the same clientToken gives the same resource")
    try:
        w.c.create_service_network(name="conf-net-other", clientToken="tok-1")
        check(False, "clientToken reuse with other parameters is refused")
    except ClientError as e:
        check(e.response["Error"]["Code"] == "ConflictException", "clientToken reuse with other parameters: ConflictException")
    call("GetServiceNetwork", serviceNetworkIdentifier=sn["arn"])
    call("UpdateServiceNetwork", serviceNetworkIdentifier=sn["id"], authType="AWS_IAM")
    call("ListServiceNetworks", maxResults=1)

    tgs = []
    for name, vpc in (("conf-tg-a", vpc_a), ("conf-tg-b", vpc_b)):
        tgs.append(call("CreateTargetGroup", name=name, type="IP",
                        config={"port": 8080, "protocol": "HTTP", "vpcIdentifier": vpc}))
    tg = tgs[0]
    call("GetTargetGroup", targetGroupIdentifier=tg["arn"])
    call("ListTargetGroups", vpcIdentifier=vpc_a)
    call("UpdateTargetGroup", targetGroupIdentifier=tg["id"],
         healthCheck={"enabled": True, "path": "/health", "healthCheckIntervalSeconds": 10})
    call("RegisterTargets", targetGroupIdentifier=tg["id"], targets=[{"id": "10.0.16.10"}, {"id": "10.0.16.11", "port": 9090}])
    call("ListTargets", targetGroupIdentifier=tg["id"])
    call("DeregisterTargets", targetGroupIdentifier=tg["id"], targets=[{"id": "10.0.16.11", "port": 9090}])

    svc = call("CreateService", name="conf-svc", clientToken="tok-2")
    call("GetService", serviceIdentifier=svc["arn"])
    call("ListServices")
    call("UpdateService", serviceIdentifier=svc["id"], authType="AWS_IAM")
    fwd = {"forward": {"targetGroups": [{"targetGroupIdentifier": tg["id"], "weight": 2},
                                        {"targetGroupIdentifier": tgs[1]["id"], "weight": 1}]}}
    lis = call("CreateListener", serviceIdentifier=svc["id"], name="conf-http", protocol="HTTP", port=80, defaultAction=fwd)
    call("GetListener", serviceIdentifier=svc["id"], listenerIdentifier=lis["arn"])
    call("ListListeners", serviceIdentifier=svc["id"])
    call("UpdateListener", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"],
         defaultAction={"fixedResponse": {"statusCode": 404}})
    rule = call("CreateRule", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"], name="conf-rule", priority=1,
                match={"httpMatch": {"method": "GET", "pathMatch": {"match": {"prefix": "/api"}, "caseSensitive": False},
                                     "headerMatches": [{"name": "x-canary", "match": {"exact": "yes"}}]}},
                action=fwd)
    call("GetRule", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"], ruleIdentifier=rule["arn"])
    call("ListRules", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"])
    call("UpdateRule", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"], ruleIdentifier=rule["id"], priority=5)
    # The model's whole priority range, 1-2000.
    high = call("CreateRule", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"], name="conf-rule-high",
                priority=1500, match={"httpMatch": {"method": "POST"}}, action={"fixedResponse": {"statusCode": 404}})
    rules = call("ListRules", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"])["items"]
    check([r["isDefault"] for r in rules] == [False, False, True], f"ListRules lists the default rule last: {rules}")
    call("DeleteRule", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"], ruleIdentifier=high["id"])
    batch = call("BatchUpdateRule", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"],
                 rules=[{"ruleIdentifier": rule["id"], "priority": 6}, {"ruleIdentifier": "rule-0123456789abcdef0", "priority": 7}])
    check(len(batch["successful"]) == 1 and len(batch["unsuccessful"]) == 1, "BatchUpdateRule reports each rule")

    snsa = call("CreateServiceNetworkServiceAssociation", serviceNetworkIdentifier=sn["id"], serviceIdentifier=svc["id"])
    check(snsa["status"] == "ACTIVE", "association ACTIVE once the data path is in place")
    call("GetServiceNetworkServiceAssociation", serviceNetworkServiceAssociationIdentifier=snsa["arn"])
    call("ListServiceNetworkServiceAssociations", serviceNetworkIdentifier=sn["id"])
    snva = call("CreateServiceNetworkVpcAssociation", serviceNetworkIdentifier=sn["id"], vpcIdentifier=vpc_b,
                securityGroupIds=["sg-0123456789abcdef0"])
    call("GetServiceNetworkVpcAssociation", serviceNetworkVpcAssociationIdentifier=snva["arn"])
    call("ListServiceNetworkVpcAssociations", vpcIdentifier=vpc_b)
    call("UpdateServiceNetworkVpcAssociation", serviceNetworkVpcAssociationIdentifier=snva["id"],
         securityGroupIds=["sg-0123456789abcdef1"])

    # TCP resources: a gateway in vpc_a, a domain verification, configurations
    # of each type, one in the network; no endpoint associations exist.
    rgw = call("CreateResourceGateway", name="conf-gw", vpcIdentifier=vpc_a, subnetIds=["subnet-0123456789abcdef0"],
               securityGroupIds=["sg-0123456789abcdef0"], ipAddressType="IPV4", ipv4AddressesPerEni=4)
    call("GetResourceGateway", resourceGatewayIdentifier=rgw["arn"])
    call("ListResourceGateways")
    call("UpdateResourceGateway", resourceGatewayIdentifier=rgw["id"], securityGroupIds=["sg-0123456789abcdef1"])
    dv = call("StartDomainVerification", domainName="conf.example.com")
    check(dv["status"] == "PENDING", "a new domain verification is PENDING")
    call("GetDomainVerification", domainVerificationIdentifier=dv["arn"])
    call("ListDomainVerifications")
    rcfg = call("CreateResourceConfiguration", name="conf-db", type="SINGLE", resourceGatewayIdentifier=rgw["id"],
                portRanges=["5432", "8000-8100"], protocol="TCP", customDomainName="db.conf.example.com",
                domainVerificationIdentifier=dv["id"],
                resourceConfigurationDefinition={"ipResource": {"ipAddress": "10.0.16.20"}})
    group = call("CreateResourceConfiguration", name="conf-group", type="GROUP", resourceGatewayIdentifier=rgw["id"],
                 portRanges=["6379"], groupDomain="cache.conf.example.com")
    child = call("CreateResourceConfiguration", name="conf-child", type="CHILD", resourceConfigurationGroupIdentifier=group["id"],
                 resourceConfigurationDefinition={"dnsResource": {"domainName": "node1.cache.internal", "ipAddressType": "IPV4"}})
    call("GetResourceConfiguration", resourceConfigurationIdentifier=rcfg["arn"])
    call("ListResourceConfigurations", resourceGatewayIdentifier=rgw["id"])
    call("UpdateResourceConfiguration", resourceConfigurationIdentifier=rcfg["id"], portRanges=["5432"])
    snra = call("CreateServiceNetworkResourceAssociation", serviceNetworkIdentifier=sn["id"],
                resourceConfigurationIdentifier=rcfg["id"], privateDnsEnabled=True)
    call("GetServiceNetworkResourceAssociation", serviceNetworkResourceAssociationIdentifier=snra["arn"])
    call("ListServiceNetworkResourceAssociations", serviceNetworkIdentifier=sn["id"])
    eps = call("ListResourceEndpointAssociations", resourceConfigurationIdentifier=rcfg["id"])
    check(eps["items"] == [], "no resource endpoint associations")
    eps = call("ListServiceNetworkVpcEndpointAssociations", serviceNetworkIdentifier=sn["id"])
    check(eps["items"] == [], "no VPC endpoint associations")
    try:
        w.c.delete_resource_endpoint_association(resourceEndpointAssociationIdentifier="rea-0123456789abcdef0")
        check(False, "DeleteResourceEndpointAssociation of nothing succeeded")
    except ClientError as e:
        check(e.response["Error"]["Code"] == "ResourceNotFoundException", "DeleteResourceEndpointAssociation: ResourceNotFoundException")
        w.exercised.add("DeleteResourceEndpointAssociation")

    als = call("CreateAccessLogSubscription", resourceIdentifier=svc["arn"],
               destinationArn="arn:aws:logs:us-east-1:111122223333:log-group:conf-logs")
    call("GetAccessLogSubscription", accessLogSubscriptionIdentifier=als["arn"])
    call("ListAccessLogSubscriptions", resourceIdentifier=svc["id"])
    call("UpdateAccessLogSubscription", accessLogSubscriptionIdentifier=als["id"],
         destinationArn="arn:aws:logs:us-east-1:111122223333:log-group:conf-logs-2")

    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]})
    call("PutAuthPolicy", resourceIdentifier=svc["id"], policy=policy)
    got = call("GetAuthPolicy", resourceIdentifier=svc["arn"])
    check(got["state"] == "Active", "auth policy Active on an AWS_IAM service")
    # As a policy file holds it (`--policy file://policy.json`): on lines.
    pretty = json.dumps(json.loads(policy), indent=2) + "\n"
    call("PutResourcePolicy", resourceArn=sn["arn"], policy=pretty)
    got = call("GetResourcePolicy", resourceArn=sn["arn"])
    check(got.get("policy") == pretty, "a multi-line resource policy is kept as sent")

    call("TagResource", resourceArn=svc["arn"], tags={"team": "a", "env": "test"})
    call("UntagResource", resourceArn=svc["arn"], tagKeys=["env"])
    tags = call("ListTagsForResource", resourceArn=svc["arn"])
    check(tags["tags"] == {"team": "a"}, "tags after tag/untag")

    # Pagination walks every item exactly once.
    for i in range(5):
        call("CreateTargetGroup", name=f"conf-page-{i}", type="IP", config={"port": 80, "protocol": "HTTP", "vpcIdentifier": vpc_a})
    seen, token = [], None
    while True:
        kw = {"maxResults": 2}
        if token:
            kw["nextToken"] = token
        page = call("ListTargetGroups", **kw)
        seen += [t["name"] for t in page["items"]]
        token = page.get("nextToken")
        if not token:
            break
    check(len(seen) == len(set(seen)) == 7, f"pagination gives each of 7 target groups once: {seen}")

    # Deletes, in dependency order.
    call("DeleteResourcePolicy", resourceArn=sn["arn"])
    call("DeleteAuthPolicy", resourceIdentifier=svc["id"])
    call("DeleteAccessLogSubscription", accessLogSubscriptionIdentifier=als["id"])
    call("DeleteRule", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"], ruleIdentifier=rule["id"])
    call("DeleteListener", serviceIdentifier=svc["id"], listenerIdentifier=lis["id"])
    call("DeleteServiceNetworkServiceAssociation", serviceNetworkServiceAssociationIdentifier=snsa["id"])
    call("DeleteServiceNetworkResourceAssociation", serviceNetworkResourceAssociationIdentifier=snra["id"])
    for r in (rcfg, child, group):
        call("DeleteResourceConfiguration", resourceConfigurationIdentifier=r["id"])
    call("DeleteDomainVerification", domainVerificationIdentifier=dv["id"])
    call("DeleteResourceGateway", resourceGatewayIdentifier=rgw["id"])
    call("DeleteServiceNetworkVpcAssociation", serviceNetworkVpcAssociationIdentifier=snva["id"])
    call("DeleteService", serviceIdentifier=svc["id"])
    for t in w.c.list_target_groups()["items"]:
        call("DeleteTargetGroup", targetGroupIdentifier=t["id"])
    call("DeleteServiceNetwork", serviceNetworkIdentifier=sn["id"])
    check(w.c.list_services()["items"] == [] and w.c.list_service_networks()["items"] == [], "everything deleted")

    # Every other operation answers clearly that it is not supported.
    unsupported = 0
    for op in w.model.operation_names:
        if op in w.exercised:
            continue
        shape = w.model.operation_model(op).input_shape
        params = dummy(shape) if shape is not None else {}
        try:
            getattr(w.c, _snake(op))(**params)
            check(False, f"{op}: unsupported operation answered success")
        except ClientError as e:
            err = e.response["Error"]
            ok = err["Code"] == "ValidationException" and "not supported" in err.get("Message", "")
            check(ok, f"{op}: clear not-supported error (got {err['Code']}: {err.get('Message')})")
            unsupported += 1
    print(f"conformance: {len(w.exercised)} operations round-tripped, {unsupported} unsupported answered clearly")
    check(len(w.exercised) + unsupported == len(w.model.operation_names), "every operation of the model is covered")
    check(unsupported == 0, f"all {len(w.model.operation_names)} operations are built ({unsupported} refused)")


def dummy(shape):
    """Minimal parameters botocore's own validation accepts."""
    out = {}
    for name in shape.required_members:
        m = shape.members[name]
        t = m.type_name
        if t == "string":
            out[name] = m.enum[0] if m.enum else "x" * max(m.metadata.get("min", 1), 1)
        elif t in ("integer", "long"):
            out[name] = max(m.metadata.get("min", 1), 1)
        elif t == "boolean":
            out[name] = True
        elif t == "list":
            out[name] = []
        elif t == "map":
            out[name] = {}
        elif t == "structure":
            out[name] = dummy(m)
    return out


# ---------------------------------------------------------------- bad input


def snapshot(c):
    return {
        "sn": c.list_service_networks()["items"],
        "svc": c.list_services()["items"],
        "tg": c.list_target_groups()["items"],
        # An association list needs a filter: every network's.
        "snva": [a for sn in c.list_service_networks()["items"]
                 for a in c.list_service_network_vpc_associations(serviceNetworkIdentifier=sn["id"])["items"]],
        "snsa": [a for sn in c.list_service_networks()["items"]
                 for a in c.list_service_network_service_associations(serviceNetworkIdentifier=sn["id"])["items"]],
    }


def expect_error(c, what, code, fn, field=None):
    try:
        fn()
        check(False, f"{what}: accepted")
    except ClientError as e:
        err = e.response["Error"]
        fields = [f.get("name") for f in e.response.get("fieldList", [])]
        ok = err["Code"] == code and (field is None or field in fields or field in err.get("Message", ""))
        check(ok, f"{what}: {code}{' naming ' + field if field else ''} (got {err['Code']}: {err.get('Message')} {fields})")


def raw(endpoint, creds, method, path, body):
    req = botocore.awsrequest.AWSRequest(method=method, url=endpoint + path, data=body,
                                         headers={"content-type": "application/json"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(*creds), "vpc-lattice", REGION).add_auth(req)
    r = urllib.request.Request(req.url, data=body, method=method, headers=dict(req.headers))
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, "", resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-amzn-ErrorType", ""), e.read().decode()


def bad_input(endpoint, creds, vpc_a):
    good = client(endpoint, creds)
    c = client(endpoint, creds, validate=False)
    model = c.meta.service_model
    sn = good.create_service_network(name="bad-net")
    tg = good.create_target_group(name="bad-tg", type="IP", config={"port": 80, "protocol": "HTTP", "vpcIdentifier": vpc_a})
    svc = good.create_service(name="bad-svc")
    ids = {"serviceNetworkIdentifier": sn["id"], "serviceIdentifier": svc["id"], "targetGroupIdentifier": tg["id"],
           "resourceIdentifier": svc["id"], "resourceArn": svc["arn"]}
    before = snapshot(good)

    valid = {
        "CreateServiceNetwork": {"name": "bad-net-2"},
        "CreateService": {"name": "bad-svc-2"},
        "CreateTargetGroup": {"name": "bad-tg-2", "type": "IP", "config": {"port": 80, "protocol": "HTTP", "vpcIdentifier": vpc_a}},
        "CreateListener": {"serviceIdentifier": svc["id"], "name": "bad-listener", "protocol": "HTTP",
                           "defaultAction": {"fixedResponse": {"statusCode": 404}}},
        "CreateServiceNetworkServiceAssociation": {"serviceNetworkIdentifier": sn["id"], "serviceIdentifier": svc["id"]},
        "CreateServiceNetworkVpcAssociation": {"serviceNetworkIdentifier": sn["id"], "vpcIdentifier": vpc_a},
        "CreateAccessLogSubscription": {"resourceIdentifier": svc["id"], "destinationArn": "arn:aws:logs:us-east-1:111122223333:log-group:x"},
        "RegisterTargets": {"targetGroupIdentifier": tg["id"], "targets": [{"id": "10.0.16.10"}]},
        "PutAuthPolicy": {"resourceIdentifier": svc["id"], "policy": "{}"},
        "TagResource": {"resourceArn": svc["arn"], "tags": {"a": "b"}},
    }
    for op, params in valid.items():
        om = model.operation_model(op)
        fn = getattr(c, _snake(op))
        # Each required body member missing.
        for req in om.input_shape.required_members:
            if om.input_shape.members[req].serialization.get("location"):
                continue
            p = {k: v for k, v in params.items() if k != req}
            expect_error(c, f"{op} without {req}", "ValidationException", lambda: fn(**p), req)
        # Each enum member out of range.
        for name, m in om.input_shape.members.items():
            if m.type_name == "string" and m.enum and name in params:
                p = dict(params, **{name: "NOT_A_VALUE"})
                expect_error(c, f"{op} {name} out of range", "ValidationException", lambda: fn(**p), name)
        # Names one character too long.
        if "name" in params:
            longest = om.input_shape.members["name"].metadata.get("max")
            p = dict(params, name="a" * (longest + 1))
            expect_error(c, f"{op} name of {longest + 1} characters", "ValidationException", lambda: fn(**p), "name")
    # Nested enum and range problems are named by path.
    expect_error(c, "CreateTargetGroup config.protocol out of range", "ValidationException",
                 lambda: c.create_target_group(name="bad-tg-3", type="IP", config={"port": 80, "protocol": "GOPHER", "vpcIdentifier": vpc_a}),
                 "config.protocol")
    expect_error(c, "CreateTargetGroup missing namespace", "ValidationException",
                 lambda: c.create_target_group(name="bad-tg-4", type="IP", config={"port": 80, "protocol": "HTTP", "vpcIdentifier": "no-such-vpc"}),
                 "config.vpcIdentifier")

    # What only the planner checks is named by the request's field, not
    # by the configuration's path.
    lis = good.create_listener(serviceIdentifier=svc["id"], name="bad-listener-2", protocol="HTTP",
                               defaultAction={"fixedResponse": {"statusCode": 404}})
    expect_error(c, "CreateRule matching nothing", "ValidationException",
                 lambda: c.create_rule(serviceIdentifier=svc["id"], listenerIdentifier=lis["id"], name="empty", priority=3,
                                       match={"httpMatch": {}}, action={"fixedResponse": {"statusCode": 404}}),
                 "match.httpMatch")
    try:
        c.create_rule(serviceIdentifier=svc["id"], listenerIdentifier=lis["id"], name="empty", priority=3,
                      match={"httpMatch": {}}, action={"fixedResponse": {"statusCode": 404}})
    except ClientError as e:
        names = [f.get("name", "") for f in e.response.get("fieldList", [])]
        check(not any("services[" in n for n in names), f"no configuration path in the error: {names}")
    for op in ("list_service_network_vpc_associations", "list_service_network_service_associations"):
        expect_error(c, f"{op} without a filter", "ValidationException", lambda: getattr(c, op)(), "serviceNetworkIdentifier")
    expect_error(c, "CreateRule priority 2001", "ValidationException",
                 lambda: c.create_rule(serviceIdentifier=svc["id"], listenerIdentifier=lis["id"], name="high", priority=2001,
                                       match={"httpMatch": {"method": "GET"}}, action={"fixedResponse": {"statusCode": 404}}),
                 "priority")
    good.delete_listener(serviceIdentifier=svc["id"], listenerIdentifier=lis["id"])

    # Model patterns: a resource policy of spaces only, an ARN with a
    # non-ASCII account.
    expect_error(c, "PutResourcePolicy of spaces only", "ValidationException",
                 lambda: c.put_resource_policy(resourceArn=sn["arn"], policy=" \n\u00a0"), "policy")
    expect_error(c, "TagResource on an ARN with Arabic-Indic digits", "ValidationException",
                 lambda: c.tag_resource(resourceArn=svc["arn"].replace("111122223333", "\u0661" * 12), tags={"a": "b"}),
                 "resourceArn")

    # Unknown identifiers, well formed.
    for op, key, value in (("GetService", "serviceIdentifier", "svc-0123456789abcdef0"),
                           ("GetServiceNetwork", "serviceNetworkIdentifier", "sn-0123456789abcdef0"),
                           ("GetTargetGroup", "targetGroupIdentifier", "tg-0123456789abcdef0"),
                           ("DeleteService", "serviceIdentifier", "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0")):
        expect_error(c, f"{op} unknown id", "ResourceNotFoundException", lambda: getattr(c, _snake(op))(**{key: value}))

    # Malformed JSON and a 10 MB body.
    status, kind, body = raw(endpoint, creds, "POST", "/servicenetworks", b'{"name": "x",')
    check(status == 400 and kind.startswith("ValidationException") and "cannotParse" in body, f"malformed JSON: {status} {kind} {body[:120]}")
    status, kind, body = raw(endpoint, creds, "POST", "/servicenetworks", b'{"name": "' + b"a" * (10 << 20) + b'"}')
    check(status == 400 and kind.startswith("ValidationException"), f"10 MB body: {status} {kind} {body[:120]}")

    after = snapshot(good)
    check(before == after, "bad input changed nothing")

    # Quotas: Lattice's default of 10 service networks, then a clear refusal.
    made = []
    for i in range(20):
        try:
            made.append(good.create_service_network(name=f"quota-net-{i}")["id"])
        except ClientError as e:
            err = e.response["Error"]
            ok = (err["Code"] == "ServiceQuotaExceededException" and "service-networks" in err.get("Message", "")
                  and e.response.get("quotaCode") == "service-networks" and e.response.get("serviceCode") == "vpc-lattice")
            check(ok, f"quota: ServiceQuotaExceededException naming the quota (got {err['Code']}: {err.get('Message')})")
            break
    else:
        check(False, "quota: 20 service networks were accepted")
    check(len(good.list_service_networks()["items"]) == 10, "quota: exactly 10 service networks exist")
    for sn_id in made:
        good.delete_service_network(serviceNetworkIdentifier=sn_id)
    del ids


def main():
    mode, endpoint, cred_file = sys.argv[1], sys.argv[2], sys.argv[3]
    creds = read_creds(cred_file)
    if mode == "conformance":
        conformance(endpoint, creds, sys.argv[4], sys.argv[5])
    elif mode == "bad-input":
        bad_input(endpoint, creds, sys.argv[4])
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(f"{len(PASSED)} passed, {len(FAILED)} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
