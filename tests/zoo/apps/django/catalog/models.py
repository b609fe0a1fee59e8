from django.db import models


class Tenant(models.Model):
    id = models.TextField(primary_key=True)
    region = models.TextField()
    country = models.TextField()
    settings = models.JSONField()

    class Meta:
        db_table = "tenants"
        managed = False


class Product(models.Model):
    sku = models.TextField(primary_key=True)
    name = models.TextField()
    price_cents = models.IntegerField()
    weight_g = models.IntegerField(null=True)
    dimensions = models.JSONField(null=True)
    pricing = models.JSONField(null=True)

    class Meta:
        db_table = "products"
        managed = False


class InventorySync(models.Model):
    warehouse = models.TextField(primary_key=True)
    synced_at = models.DateTimeField()

    class Meta:
        db_table = "inventory_sync"
        managed = False
