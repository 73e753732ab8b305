"""astrapy (unmodified, latest 2.x) against keyplane's Data API and DevOps API.

Run by tests/astrapy/run.sh, which starts `keyplane serve --dev`, creates a customer-keyed
serverless database and passes its endpoint and token in the environment. The suspension
test disables the customer key, so it runs last.
"""
import json
import os
import subprocess
import urllib.request
import uuid

import pytest
from astrapy import DataAPIClient
from astrapy.api_options import APIOptions, DataAPIURLOptions, DevOpsAPIURLOptions
from astrapy.constants import ReturnDocument, SortMode
from astrapy.exceptions import (
    CollectionInsertManyException,
    DataAPIHttpException,
    DataAPIResponseException,
)

API = os.environ["KEYPLANE_API_URL"]
TOKEN = os.environ["KEYPLANE_TOKEN"]
ENDPOINT = os.environ["KEYPLANE_ENDPOINT"]
KEY_ARN = os.environ["KEYPLANE_KEY_ARN"]

# keyplane's endpoint is http://HOST:PORT/db/{databaseId}-{region}, and astrapy refuses an
# api_endpoint with a path ("must be in the form http[s]://<domain name or IP>[:port]"), so
# the endpoint's path moves into api_path; environment="other" then builds
# {host}/db/{id}-{region}/api/json/v1/{keyspace}/{collection}.
BASE, _, ENDPOINT_PATH = ENDPOINT.partition("/db/")
URL_OPTIONS = APIOptions(
    data_api_url_options=DataAPIURLOptions(api_path=f"/db/{ENDPOINT_PATH}/api/json", api_version="v1")
)


@pytest.fixture(scope="module")
def database():
    client = DataAPIClient(environment="other")
    return client.get_database(BASE, token=TOKEN, keyspace="default_keyspace", spawn_api_options=URL_OPTIONS)


@pytest.fixture(scope="module")
def people(database):
    coll = database.create_collection("people")
    docs = [{"i": i, "group": i % 4, "name": f"p{i}", "tags": ["even" if i % 2 == 0 else "odd"]} for i in range(1000)]
    result = coll.insert_many(docs)
    assert len(result.inserted_ids) == 1000
    assert len(set(result.inserted_ids)) == 1000
    # generated ids are UUIDs
    uuid.UUID(str(result.inserted_ids[0]))
    return coll


def test_collections_are_listed_and_creation_is_idempotent(database, people):
    assert "people" in database.list_collection_names()
    names = [c.name for c in database.list_collections()]
    assert "people" in names
    again = database.create_collection("people")
    assert again.name == "people"


def test_count_and_estimated_count(people):
    assert people.count_documents({}, upper_bound=1000) == 1000
    assert people.count_documents({"group": 1}, upper_bound=1000) == 250
    assert people.estimated_document_count() == 1000


def test_find_with_filters_sort_and_projection(people):
    docs = list(people.find({"group": 1, "i": {"$lt": 100}}, sort={"i": SortMode.DESCENDING}, projection={"i": True}))
    assert [d["i"] for d in docs] == [i for i in range(99, -1, -1) if i % 4 == 1]
    assert set(docs[0].keys()) == {"_id", "i"}
    # Paging through the whole collection (pages of 20 under the hood).
    assert sum(1 for _ in people.find({})) == 1000
    # Operators astrapy users reach for.
    assert len(list(people.find({"i": {"$in": [1, 2, 3]}}))) == 3
    assert len(list(people.find({"$or": [{"i": 1}, {"group": 3, "i": {"$gte": 990}}]}))) == 4
    assert len(list(people.find({"tags": {"$all": ["odd"]}, "i": {"$lt": 10}}))) == 5
    assert len(list(people.find({}, skip=10, limit=5, sort={"i": SortMode.ASCENDING}))) == 5
    one = people.find_one({"name": "p7"})
    assert one is not None and one["i"] == 7
    assert people.find_one({"name": "nobody"}) is None


def test_update_many_find_one_and_update_and_replace(people):
    result = people.update_many({"group": 2}, {"$set": {"flag": True}, "$inc": {"i": 0}})
    assert result.update_info["n"] == 250
    assert people.count_documents({"flag": True}, upper_bound=1000) == 250
    doc = people.find_one_and_update({"name": "p5"}, {"$inc": {"i": 1000}}, return_document=ReturnDocument.AFTER)
    assert doc["i"] == 1005
    before = people.find_one_and_update({"name": "p6"}, {"$set": {"x": 1}}, projection={"name": True})
    assert before == {"_id": before["_id"], "name": "p6"}
    up = people.update_one({"name": "new"}, {"$set": {"i": -1}}, upsert=True)
    assert up.update_info.get("upserted") is not None
    rep = people.replace_one({"name": "p8"}, {"name": "p8", "group": 0, "replaced": True})
    assert rep.update_info["n"] == 1
    assert people.find_one({"name": "p8"})["replaced"] is True
    gone = people.find_one_and_delete({"name": "new"})
    assert gone["i"] == -1


def test_delete_many_and_count(people):
    result = people.delete_many({"group": 0})
    assert result.deleted_count == 250
    assert people.count_documents({}, upper_bound=1000) == 750
    assert people.delete_one({"name": "p1"}).deleted_count == 1


def test_errors_are_astrapy_exceptions(database, people):
    existing = people.find_one({"name": "p3"})
    with pytest.raises(CollectionInsertManyException) as exc:
        people.insert_many([{"_id": existing["_id"]}, {"name": "fresh"}])
    assert len(exc.value.inserted_ids) == 1
    with pytest.raises(DataAPIResponseException) as exc:
        people.find_one({"i": {"$regex": "x"}})
    assert exc.value.error_descriptors[0].error_code == "FILTER_UNSUPPORTED_OPERATOR"
    assert "$regex" in exc.value.error_descriptors[0].message
    with pytest.raises(DataAPIResponseException) as exc:
        database.get_collection("missing").find_one({})
    assert exc.value.error_descriptors[0].error_code == "UNKNOWN_COLLECTION_OR_TABLE"


def test_readme_recipe_from_the_data_endpoint_url():
    """README's recipe, from the dataEndpointUrl the DevOps API reports; dotted paths through
    arrays of objects and one $currentDate per command, through astrapy."""
    req = urllib.request.Request(f"{API}/v2/databases/{os.environ['KEYPLANE_DB_ID']}",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    endpoint = json.load(urllib.request.urlopen(req))["dataEndpointUrl"]
    host, _, path = endpoint.partition("/db/")
    assert host == BASE, endpoint
    client = DataAPIClient(environment="other")
    db = client.get_database(
        host,
        token=TOKEN,
        keyspace="default_keyspace",
        spawn_api_options=APIOptions(data_api_url_options=DataAPIURLOptions(
            api_path=f"/db/{path}/api/json", api_version="v1")),
    )
    coll = db.create_collection("orders")
    coll.insert_many([
        {"n": 1, "items": [{"sku": "A1", "qty": 1}, {"sku": "B2", "qty": 2}]},
        {"n": 2, "items": [{"sku": "C3", "qty": 9}]},
        {"n": 3, "items": {"sku": "A1", "qty": 3}},
        {"n": 4},
    ])
    assert sorted(d["n"] for d in coll.find({"items.sku": "A1"})) == [1, 3]
    assert sorted(d["n"] for d in coll.find({"items.sku": {"$in": ["B2", "C3"]}})) == [1, 2]
    assert sorted(d["n"] for d in coll.find({"items.qty": {"$gt": 2}})) == [2, 3]
    assert sorted(d["n"] for d in coll.find({"items.sku": {"$exists": False}})) == [4]
    assert coll.count_documents({"items.sku": {"$ne": "A1"}}, upper_bound=10) == 2
    result = coll.update_many({}, {"$currentDate": {"at": True}})
    assert result.update_info["nModified"] == 4
    dates = {repr(d["at"]) for d in coll.find({})}
    assert len(dates) == 1, dates
    db.drop_collection("orders")


def test_drop_collection(database):
    coll = database.create_collection("scratch")
    coll.insert_one({"a": 1})
    database.drop_collection("scratch")
    assert "scratch" not in database.list_collection_names()


def admin():
    client = DataAPIClient(token=TOKEN, environment="prod")
    return client.get_admin(spawn_api_options=APIOptions(dev_ops_api_url_options=DevOpsAPIURLOptions(dev_ops_url=API)))


def test_devops_admin_lists_databases():
    dbs = admin().list_databases()
    assert os.environ["KEYPLANE_DB_ID"] in [d.id for d in dbs]


def test_devops_admin_creates_a_database_that_reaches_active():
    db_admin = admin().create_database(
        "made-by-astrapy", cloud_provider="AWS", region="us-east-2", keyspace="default_keyspace", wait_until_active=True
    )
    info = db_admin.info()
    assert info.status == "ACTIVE"


def test_zz_suspended_database_raises_naming_the_key(database):
    coll = database.get_collection("people")
    assert coll.find_one({}) is not None
    subprocess.run(
        [os.environ["KEYPLANE_BIN"], "kms", "disable-key", "--key-id", KEY_ARN,
         "--credentials-file", os.environ["KEYPLANE_CREDENTIALS"]],
        check=True, capture_output=True,
    )
    req = urllib.request.Request(f"{API}/v2/kms/provider/aws/region/us-east-2/check", method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    urllib.request.urlopen(req).read()
    with pytest.raises(DataAPIHttpException) as exc:
        coll.find_one({})
    assert exc.value.response.status_code == 503
    err = exc.value.error_descriptors[0]
    assert err.error_code == "DATABASE_SUSPENDED"
    assert KEY_ARN in err.message and "disabled" in err.message
    with pytest.raises(DataAPIHttpException):
        coll.insert_one({"after": "suspension"})
